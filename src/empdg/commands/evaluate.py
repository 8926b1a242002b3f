"""``empdg-evaluate ckpt_path=PATH`` (a checkpoint on the test split) or ``predictions_file=PATH`` (a file).

The work is :func:`empdg.evaluation.pipeline.run_evaluation`; the last stdout line is the metrics as
one JSON object (for scripts and tests).
"""

from __future__ import annotations

import json

import hydra
from omegaconf import DictConfig

from empdg.config import CONFIG_DIR
from empdg.config.hydra_errors import reports_compose_errors
from empdg.config.run_dir import discard_if_failed
from empdg.config.runtime import apply_runtime
from empdg.errors import exit_on_user_error
from empdg.evaluation.pipeline import run_evaluation


@reports_compose_errors  # Hydra's own composition errors: `error: <message>`, exit 2
@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="evaluate")
def main(cfg: DictConfig) -> None:
    # a failed evaluation leaves no run folder holding only Hydra's files; user mistakes: `error: <message>`, exit 2
    with discard_if_failed(), exit_on_user_error():
        apply_runtime(cfg)
        metrics = run_evaluation(cfg)
    print(json.dumps(metrics), flush=True)
