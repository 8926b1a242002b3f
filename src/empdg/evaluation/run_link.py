"""Link an evaluation to the MLflow run that trained the checkpoint.

The training run is found from the checkpoint's run folder (``<run>/checkpoints/x.ckpt`` -> ``<run>``):

1. ``<run>/mlflow_run.json`` (:data:`RUN_RECORD_FILE`, written by :func:`write_run_record`): run id and store;
2. otherwise a search of the candidate stores for the run tagged ``empdg.run_folder = <run>`` (the tag training
   sets when it opens its run), or, for runs logged before that tag existed, whose param ``paths.output_dir``
   (training logs its flattened config as params) is the run folder.

Candidate stores: the evaluation's own ``logger.tracking_uri``, the training config's (a relative SQLite path
taken from the run's root, ``<run>/../../..``), and the fallback store inside the run folder
(``<run>/mlruns/mlflow.db``). Only SQLite files that exist are opened, so looking never creates a store.

The evaluation run is then created in the training run's experiment as its child (tag ``mlflow.parentRunId``,
so the MLflow UI nests it) with the tag ``empdg.train_run_id``, and the test metrics are logged back onto the
training run as ``test/<metric>`` (``test_<subset>/<metric>`` for a subset other than ``all``), with the tag
``empdg.eval_run.<subset>`` naming the evaluation run that holds the predictions.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

__all__ = [
    "EVAL_RUN_TAG",
    "RUN_RECORD_FILE",
    "TRAIN_RUN_TAG",
    "TrainingRun",
    "candidate_stores",
    "find_training_run",
    "linked_logger_config",
    "log_test_metrics",
    "read_run_record",
    "subset_metric_prefix",
    "write_run_record",
]

RUN_RECORD_FILE = "mlflow_run.json"
TRAIN_RUN_TAG = "empdg.train_run_id"  # on an evaluation run: the training run it evaluates
EVAL_RUN_TAG = "empdg.eval_run"  # on a training run: f"{EVAL_RUN_TAG}.{subset}" = the latest evaluation run
RUN_FOLDER_TAG = "empdg.run_folder"
_MAX_PARAM = 250  # Lightning's MLFlowLogger truncates param values to 250 characters


@dataclass(frozen=True)
class TrainingRun:
    """Where a training run lives in MLflow."""

    run_id: str
    tracking_uri: str
    experiment_id: str
    experiment_name: str
    run_name: str | None = None


def subset_metric_prefix(subset: str) -> str:
    """``test`` for the ``all`` subset, ``test_<subset>`` otherwise (``test_feedback``)."""
    return "test" if subset == "all" else f"test_{subset}"


def write_run_record(run_folder: str | Path, run_id: str, tracking_uri: str, experiment_id: str | None = None) -> Path:
    """Write ``<run_folder>/mlflow_run.json`` (what training should call once its MLflow run exists)."""
    path = Path(run_folder) / RUN_RECORD_FILE
    record = {"run_id": run_id, "tracking_uri": tracking_uri, "experiment_id": experiment_id}
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return path


def read_run_record(run_folder: str | Path) -> dict[str, Any] | None:
    """The run record of a run folder, or None when there is none (or it is unreadable)."""
    path = Path(run_folder) / RUN_RECORD_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        log.warning("ignoring unreadable %s: %s", path, error)
        return None
    return record if isinstance(record, dict) and record.get("run_id") else None


def _sqlite_path(uri: str, base: Path | None = None) -> Path | None:
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return None
    text = uri[len(prefix) :].partition("?")[0]
    if text.startswith("file:"):
        return None
    path = Path(text).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    return path.resolve()


def candidate_stores(
    run_folder: Path, eval_uri: str | None, run_config: Mapping[str, Any] | None = None
) -> list[str]:
    """Tracking URIs that may hold the training run, most likely first, without duplicates.

    SQLite stores are listed only when their file exists; other URIs (servers) as given.
    """
    run_folder = Path(run_folder).resolve()
    run_root = run_folder.parents[2] if len(run_folder.parents) > 2 else run_folder
    train_uri = ((run_config or {}).get("logger") or {}).get("tracking_uri")
    candidates: list[tuple[str, Path | None]] = []
    record = read_run_record(run_folder)
    if record and record.get("tracking_uri"):
        candidates.append((str(record["tracking_uri"]), run_root))
    if eval_uri:
        candidates.append((str(eval_uri), None))
    if train_uri:
        candidates += [(str(train_uri), run_root), (str(train_uri), None)]
    candidates.append((f"sqlite:///{run_folder / 'mlruns' / 'mlflow.db'}", None))
    uris: list[str] = []
    for uri, base in candidates:
        path = _sqlite_path(uri, base) if uri.startswith("sqlite:///") else None
        if uri.startswith("sqlite:///"):
            if path is None or not path.is_file():
                continue
            uri = f"sqlite:///{path}"
        if uri not in uris:
            uris.append(uri)
    return uris


def _quoted(value: str) -> str | None:
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    return None


def _training_run(client: Any, run: Any, uri: str) -> TrainingRun:
    experiment = client.get_experiment(run.info.experiment_id)
    return TrainingRun(run.info.run_id, uri, run.info.experiment_id, experiment.name, run.info.run_name)


def _search_store(uri: str, run_folder: Path, run_id: str | None) -> TrainingRun | None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    if run_id:
        try:
            return _training_run(client, client.get_run(run_id), uri)
        except Exception:  # not in this store
            return None
    experiment_ids = [e.experiment_id for e in client.search_experiments()]
    if not experiment_ids:
        return None
    folder = str(run_folder)
    filters = []
    for key, value in ((f"tags.`{RUN_FOLDER_TAG}`", folder), ("params.`paths.output_dir`", folder[:_MAX_PARAM])):
        quoted = _quoted(value)
        if quoted is not None:
            filters.append(f"{key} = {quoted}")
    for filter_string in filters:
        newest = ["attributes.start_time DESC"]
        runs = client.search_runs(experiment_ids, filter_string, max_results=50, order_by=newest)
        runs = [r for r in runs if r.data.tags.get("empdg.role") != "evaluation" and TRAIN_RUN_TAG not in r.data.tags]
        if runs:
            return _training_run(client, runs[0], uri)
    return None


def find_training_run(
    run_folder: str | Path, eval_uri: str | None = None, run_config: Mapping[str, Any] | None = None
) -> TrainingRun | None:
    """The MLflow run that trained in ``run_folder``, or None (never raises: linking is best effort)."""
    run_folder = Path(run_folder).resolve()
    record = read_run_record(run_folder)
    run_id = str(record["run_id"]) if record else None
    for uri in candidate_stores(run_folder, eval_uri, run_config):
        try:
            found = _search_store(uri, run_folder, run_id)
        except Exception as error:  # an unreachable or foreign store: try the next one
            log.warning("could not search MLflow store %s for the training run: %s", uri, error)
            continue
        if found is not None:
            return found
    return None


def _finite_numbers(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {
        key: float(value)
        for key, value in metrics.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))
    }


def log_test_metrics(
    run: TrainingRun, metrics: Mapping[str, Any], subset: str, eval_run_id: str | None = None
) -> dict[str, float]:
    """Log the finite numeric ``metrics`` onto the training run as ``<prefix>/<name>``; returns what was logged.

    Also tags the training run with ``empdg.eval_run.<subset>`` = ``eval_run_id`` (where its predictions are).
    """
    from mlflow.entities import Metric, RunTag
    from mlflow.tracking import MlflowClient

    prefix = subset_metric_prefix(subset)
    logged = {f"{prefix}/{key}": value for key, value in _finite_numbers(metrics).items()}
    now = int(time.time() * 1000)
    tags = [RunTag(f"{EVAL_RUN_TAG}.{subset}", eval_run_id)] if eval_run_id else []
    MlflowClient(tracking_uri=run.tracking_uri).log_batch(
        run.run_id, metrics=[Metric(key, value, now, 0) for key, value in logged.items()], tags=tags
    )
    return logged



def linked_logger_config(
    logger_cfg: Mapping[str, Any], tags: Mapping[str, str], run: TrainingRun
) -> tuple[dict[str, Any], dict[str, str]]:
    """The evaluation logger's config and tags for a child run of ``run``: same store and experiment,
    ``mlflow.parentRunId`` and ``empdg.train_run_id`` set."""
    extra = {**(logger_cfg.get("extra_tags") or {}), "mlflow.parentRunId": run.run_id}
    config = {**logger_cfg, "tracking_uri": run.tracking_uri, "experiment_name": run.experiment_name}
    config["extra_tags"] = extra
    return config, {**tags, TRAIN_RUN_TAG: run.run_id}
