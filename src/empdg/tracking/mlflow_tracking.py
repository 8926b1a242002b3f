"""Experiment tracking: MLflow with a local SQLite store by default, never fatal.

A run must not fail because the tracking store is unreachable: we probe it, and on failure warn,
fall back to a SQLite store inside the run's own folder and say where the results went.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pytorch_lightning.loggers import CSVLogger, Logger, MLFlowLogger

log = logging.getLogger(__name__)


def absolute_sqlite_uri(uri: str) -> str:
    """``sqlite:///relative/x.db`` depends on the working directory; pin it and create its folder."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return uri
    path = Path(uri[len(prefix) :]).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return prefix + str(path)


def probe_tracking_store(uri: str) -> str | None:
    """Return None when the store answers, else the error text (quick: no long HTTP retries)."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    try:
        from mlflow.tracking import MlflowClient

        MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
        return None
    except Exception as error:  # any failure means: use the fallback store
        return f"{type(error).__name__}: {error}"


def git_commit(cwd: Path | None = None) -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def build_logger(logger_cfg: Mapping[str, Any], output_dir: Path, tags: Mapping[str, str]) -> Logger | None:
    name = logger_cfg["name"]
    if name == "none":
        return None
    if name == "csv":
        return CSVLogger(save_dir=str(output_dir), name="csv")
    if name != "mlflow":
        raise ValueError(f"logger.name={name!r} is unknown; use logger=mlflow, logger=csv or logger=none")
    uri = absolute_sqlite_uri(str(logger_cfg["tracking_uri"]))
    artifacts = Path(str(logger_cfg["artifact_location"])).expanduser().resolve()
    problem = probe_tracking_store(uri)
    if problem is not None:
        fallback_dir = output_dir / "mlruns"
        fallback = absolute_sqlite_uri(f"sqlite:///{fallback_dir / 'mlflow.db'}")
        warnings.warn(
            f"MLflow tracking store {uri} is unreachable ({problem}); logging to the local fallback "
            f"{fallback} instead. Inspect it with: mlflow ui --backend-store-uri {fallback}",
            stacklevel=2,
        )
        uri, artifacts = fallback, fallback_dir / "artifacts"
    all_tags = {**dict(tags), **{str(k): str(v) for k, v in (logger_cfg.get("extra_tags") or {}).items()}}
    return MLFlowLogger(
        experiment_name=str(logger_cfg["experiment_name"]),
        run_name=str(logger_cfg["run_name"]),
        tracking_uri=uri,
        tags=all_tags,
        artifact_location=artifacts.as_uri(),
        run_id=logger_cfg.get("run_id"),
    )


def log_artifact(logger: Logger | None, local_path: Path, artifact_path: str | None = None) -> None:
    """Attach a file to the run; for loggers without artifacts it already lives in the run folder."""
    if isinstance(logger, MLFlowLogger):
        logger.experiment.log_artifact(logger.run_id, str(local_path), artifact_path)
    elif isinstance(logger, CSVLogger) and logger.log_dir:
        target = Path(logger.log_dir) / (artifact_path or "")
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(local_path, target / local_path.name)


def describe_run(logger: Logger | None, output_dir: Path) -> str:
    """One line telling the user where the run's results are."""
    if isinstance(logger, MLFlowLogger):
        uri = logger._tracking_uri
        return (
            f"MLflow run {logger.run_id} in experiment '{logger._experiment_name}' at {uri}\n"
            f"  open it with: mlflow ui --backend-store-uri {uri}"
        )
    if isinstance(logger, CSVLogger):
        return f"CSV metrics in {logger.log_dir}"
    return f"run folder {output_dir} (no metrics logger)"
