"""Your project's code. sweeplab puts this project's folder on the import path, so the configs in
conf/ can name what is in here by ``_target_: mynet.<module>.<name>``."""
