"""MLflow for a study: one parent run, one nested child run per trial.

The child is created here (tag ``mlflow.parentRunId``) and its id handed to the trial's training
as ``logger.run_id``, so the training logs its metrics into the nested run. Lightning does not set
tags on a run it did not create, so the project's run tags (:func:`empdg.tracking.run_record.run_tags`)
are set here. Tracking is never
fatal: when the store does not answer, the study runs without it.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from empdg.tracking.run_record import run_tags
from empdg.tracking.store import absolute_sqlite_uri, configure_http, probe_tracking_store

log = logging.getLogger(__name__)

STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}


class SweepTracker:
    """Picklable handle (URI + ids) so parallel worker processes can open their own client."""

    def __init__(self, tracking_uri: str, experiment_id: str, study_name: str, tags: Mapping[str, str]) -> None:
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.study_name = study_name
        self.tags = dict(tags)
        self.parent_run_id: str | None = None

    @property
    def client(self):
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri)

    @classmethod
    def from_config(cls, cfg: DictConfig, study_name: str) -> SweepTracker | None:
        """None when the training logger is not MLflow or its store does not take a write."""
        from mlflow.tracking import MlflowClient

        if str(cfg.logger.name) != "mlflow":
            log.info("logger.name=%s: the sweep is not tracked in MLflow", cfg.logger.name)
            return None
        configure_http(cfg.logger)
        uri = absolute_sqlite_uri(str(cfg.logger.tracking_uri))
        name = str(cfg.logger.experiment_name)
        artifacts = Path(str(cfg.logger.artifact_location)).expanduser().resolve().as_uri()
        problem = probe_tracking_store(uri, name, artifacts)  # a write: creates/tags the experiment
        if problem is None:
            try:
                experiment_id = MlflowClient(tracking_uri=uri).get_experiment_by_name(name).experiment_id
            except Exception as error:
                problem = f"{type(error).__name__}: {error}"
        if problem is not None:
            warnings.warn(
                f"MLflow store {uri} is unreachable or not writable ({problem}); the study has no parent run "
                "and each trial logs to the local store in its own folder (trials/trial_NNNN/mlruns)",
                stacklevel=2,
            )
            return None
        return cls(uri, experiment_id, study_name, run_tags(cfg))

    def start_parent(self, previous_run_id: str | None, settings: Mapping[str, Any]) -> str:
        """Reuse the study's parent run when resuming (one parent per study), else create it."""
        client = self.client
        if previous_run_id:
            try:
                client.get_run(previous_run_id)
                client.update_run(previous_run_id, status="RUNNING")
                self.parent_run_id = previous_run_id
                return previous_run_id
            except Exception:  # the run lives in another store: start a new parent
                log.warning("parent run %s not found; creating a new one", previous_run_id)
        tags = {**self.tags, "sweep": self.study_name, "sweep.role": "parent", "optuna.study": self.study_name}
        run = client.create_run(self.experiment_id, run_name=f"sweep-{self.study_name}", tags=tags)
        self.parent_run_id = run.info.run_id
        for key, value in settings.items():
            client.log_param(self.parent_run_id, f"sweep.{key}", str(value)[:6000])
        return self.parent_run_id

    def start_trial(self, number: int, params: Mapping[str, Any], trial_cfg_tags: Mapping[str, str]) -> str:
        from mlflow.entities import Param

        client = self.client
        tags = {
            **self.tags,
            **trial_cfg_tags,
            "mlflow.parentRunId": str(self.parent_run_id),
            "sweep": self.study_name,
            "sweep.role": "trial",
            "optuna.study": self.study_name,
            "optuna.trial": str(number),
            "optuna.state": "RUNNING",
        }
        run = client.create_run(self.experiment_id, run_name=f"{self.study_name}-trial-{number:04d}", tags=tags)
        run_id = run.info.run_id
        client.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()])
        return run_id

    def end_trial(self, run_id: str, state: str, value: float | None, reason: str | None, steps: int) -> None:
        client = self.client
        client.set_tag(run_id, "optuna.state", state)
        if reason:
            client.set_tag(run_id, "optuna.fail_reason", reason[:5000])
        if value is not None:
            client.log_metric(run_id, "trial/value", value)
        client.log_metric(run_id, "trial/steps", steps)
        client.set_terminated(run_id, STATUS.get(state, "FAILED"))

    def end_parent(self, status: str) -> None:
        if self.parent_run_id:
            self.client.set_terminated(self.parent_run_id, status)
