"""sweeplab: hyperparameter sweeps of PyTorch networks.

Composed by Hydra, scheduled by Ray Tune, tracked in MLflow.
"""

__version__ = "0.1.0"
