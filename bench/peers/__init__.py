"""The benchmark against the peers (``python -m bench.peers``): sweeplab's default sweep side by side
with Optuna and KerasTuner.

Two kinds of file live here. :mod:`bench.peers.race` runs the benchmark in sweeplab's environment.
The peer programs (``optuna_mlp.py``, ``kerastuner_mlp.py``, with ``task.py`` beside them) and the
CPU meter (``meter.py``) are scripts: the orchestrator runs them by path, the peers in an environment
of their own (``requirements.txt``), where they import ``task`` as a top-level module from this
folder. Nothing here imports them as part of the package.
"""
