"""Optuna studies over Hydra-composed runs: arrives with the sweep issue (#5)."""

import sys

if __name__ == "__main__":
    sys.exit(
        "sweep.py is not implemented yet: it arrives with issue #5 (Optuna sweeps). Use train.py -m for grids."
    )
