"""Train EmpDG or a baseline: ``python train.py [experiment=quickstart] [model=...] [key=value ...]``."""

import hydra
from omegaconf import DictConfig

from empdg.errors import exit_on_user_error
from empdg.training.run import run_training


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    with exit_on_user_error():  # configuration and data mistakes: `error: <message>`, exit 2, no traceback
        metrics = run_training(cfg)
    return metrics.get(cfg.callbacks.checkpoint.monitor)


if __name__ == "__main__":
    main()
