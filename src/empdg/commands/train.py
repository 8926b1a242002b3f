"""``empdg-train [experiment=quickstart] [model=...] [key=value ...]``: train EmpDG or a baseline.

``--cfg job`` prints the composed ``conf/train.yaml``. Returns the monitored validation metric, so
Hydra's multirun sweepers can optimise it.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from empdg.config import CONFIG_DIR
from empdg.config.runtime import apply_runtime
from empdg.errors import exit_on_user_error
from empdg.training.run import run_training


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    with exit_on_user_error():  # configuration and data mistakes: `error: <message>`, exit 2, no traceback
        apply_runtime(cfg)
        metrics = run_training(cfg)
    return metrics.get(cfg.callbacks.checkpoint.monitor)
