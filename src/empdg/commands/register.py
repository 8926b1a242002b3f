"""``empdg-register run_id=RUN_ID [name=empdg]``: a training run's checkpoint as a registered MLflow model.

The work is :func:`empdg.serving.registry.register_run`; the last stdout line is the registration as one JSON
object (``model_uri``: ``models:/<name>/<version>``, for ``mlflow.pyfunc.load_model`` and ``mlflow models serve``).
"""

from __future__ import annotations

import json

import hydra
from omegaconf import DictConfig, OmegaConf

from empdg.config import CONFIG_DIR
from empdg.config.hydra_errors import reports_compose_errors
from empdg.config.runtime import apply_runtime
from empdg.errors import ConfigError, exit_on_user_error
from empdg.serving.registry import default_tracking_uri, register_run


@reports_compose_errors  # Hydra's own composition errors: `error: <message>`, exit 2
@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="register")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error():  # an unknown run, no checkpoint, a missing store: `error: <message>`, exit 2
        apply_runtime(cfg)
        if not cfg.run_id:
            raise ConfigError("run_id=RUN_ID is required (the training run's id, in its folder's mlflow_run.json)")
        registration = register_run(
            str(cfg.run_id),
            str(cfg.name),
            str(cfg.tracking_uri or default_tracking_uri(cfg.paths.mlflow_dir)),
            checkpoint=str(cfg.checkpoint),
            ckpt_path=cfg.ckpt_path,
            decoding=OmegaConf.to_container(cfg.decoding, resolve=True),
            chat=OmegaConf.to_container(cfg.chat, resolve=True),
        )
    print(json.dumps(registration.as_dict()), flush=True)
