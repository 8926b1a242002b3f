"""``empdg-train [experiment=quickstart] [model=...] [key=value ...]``: train EmpDG or a baseline.

``--cfg job`` prints the composed ``conf/train.yaml``. Returns the monitored validation metric, so
Hydra's multirun sweepers can optimise it.
"""

from __future__ import annotations

import json
import sys

import hydra
from omegaconf import DictConfig

from empdg.config import CONFIG_DIR
from empdg.config.hydra_errors import reports_compose_errors
from empdg.config.overrides_file import expand_overrides_files
from empdg.config.runtime import apply_runtime
from empdg.errors import exit_on_user_error
from empdg.serving.registry import check_register_request, register_after_training
from empdg.training.settings import validate_config


def main() -> None:
    """The command: ``overrides_file=PATH`` arguments expanded (a sweep's best_overrides.txt), then Hydra."""
    with exit_on_user_error():
        sys.argv[1:] = expand_overrides_files(sys.argv[1:])
    hydra_main()


@reports_compose_errors  # Hydra's own composition errors: `error: <message>`, exit 2
@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def hydra_main(cfg: DictConfig) -> float | None:
    with exit_on_user_error():  # configuration and data mistakes: `error: <message>`, exit 2, no traceback
        apply_runtime(cfg)
        validate_config(cfg)  # before the training job's import (Lightning's alone takes seconds)
        check_register_request(cfg)  # logger.register_model=NAME needs an MLflow run: said before training
        from empdg.training.run import run_training

        metrics = run_training(cfg)
        registration = register_after_training(cfg)  # nothing (no import of MLflow's model code) unless asked
        if registration is not None:
            print(f"registered model: {registration.model_uri} ({json.dumps(registration.as_dict())})", flush=True)
    return metrics.get(cfg.callbacks.checkpoint.monitor)
