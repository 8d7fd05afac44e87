"""Regression on scikit-learn's diabetes data: the configs in conf/ name this package's data
factory, model and metric by ``_target_: diabetes.<module>.<name>``."""
