"""``python -m bench.peers``: the benchmark against Optuna and KerasTuner (:mod:`bench.peers.race`)."""

import sys

from bench.peers.race import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
