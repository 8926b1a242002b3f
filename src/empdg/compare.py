"""``python -m empdg.compare experiment=NAME [group_by=ablation] [metrics=[val/ppl,val/emotion_acc]]``.

Thin Hydra entry; the logic is in :mod:`empdg.cli.compare`. The config is the repository's
``conf/compare.yaml`` (the package is installed in editable mode from the checkout). ``experiment``
is also a config group of conf/ (train.py's presets), so Hydra would read ``experiment=NAME`` as a
group choice: the entry rewrites it to the config key ``experiment_name=NAME`` before Hydra starts.
"""

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from empdg.cli.compare import run_compare
from empdg.errors import exit_on_user_error


def alias_experiment(argv: list[str]) -> list[str]:
    return ["experiment_name=" + a.split("=", 1)[1] if a.startswith("experiment=") else a for a in argv]


@hydra.main(version_base="1.3", config_path="../../conf", config_name="compare")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error():  # no such experiment, no matching runs, a bad baseline: `error: ...`, exit 2
        run_compare(cfg, Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    sys.argv = [sys.argv[0], *alias_experiment(sys.argv[1:])]
    main()
