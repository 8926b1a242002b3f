"""Link an evaluation to the MLflow run that trained the checkpoint.

The training run is found from the checkpoint's run folder (``<run>/checkpoints/x.ckpt`` -> ``<run>``):

1. the run id in ``<run>/mlflow_run.json`` (:data:`RUN_RECORD_FILE`, written by :func:`write_run_record` when
   training opens its run);
2. otherwise (or when no store knows that id) the run tagged ``empdg.run_folder = <run>`` (the tag training sets
   when it opens its run), or, for runs logged before that tag existed, whose param ``paths.output_dir``
   (training logs its flattened config as params) is the run folder.

A run folder may come from anyone (a shared disk, a downloaded archive), so nothing in it says WHERE to look or
write: the tracking URI in ``mlflow_run.json`` and in the run's ``config.yaml`` is never contacted. The stores
searched (and then written: the evaluation run and the ``test/<metric>`` values) are only

- the evaluation's own ``logger.tracking_uri`` (this command line's, or the default resolved from the current
  ``paths``), and
- local stores strictly inside the run folder (after resolving symbolic links): training's fallback store
  ``<run>/mlruns/mlflow.db`` (or ``<run>/mlruns_fallback/mlflow.db``), or a SQLite/file store inside the folder
  that the record or the run config names. Such a store is used only when its experiment keeps its artifacts
  inside the run folder too, since the evaluation run's files go there.

Only stores that exist are opened, so looking never creates one.

The evaluation run is then created in the training run's experiment as its child (tag ``mlflow.parentRunId``,
so the MLflow UI nests it) with the tag ``empdg.train_run_id``, and the test metrics are logged back onto the
training run as ``test/<metric>`` (``test_<subset>/<metric>`` for a subset other than ``all``), with the tag
``empdg.eval_run.<subset>`` naming the evaluation run that holds the predictions.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from empdg.tracking.run_record import RUN_RECORD_FILE, read_run_record, record_training_run, write_run_record

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
    "record_training_run",
    "subset_metric_prefix",
    "write_run_record",
]

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


def subset_metric_prefix(subset: str, decoding: str = "greedy") -> str:
    """``test`` for the ``all`` subset decoded greedily (the papers' setting), ``test_<subset>`` for another
    subset (``test_feedback``), ``_<strategy>`` appended for another decoding (``test_beam``,
    ``test_feedback_sample``): a beam or sampled evaluation never overwrites the greedy figures."""
    parts = ["test", *([subset] if subset != "all" else []), *([decoding] if decoding != "greedy" else [])]
    return "_".join(parts)


_RUN_ID = re.compile(r"^[a-zA-Z0-9][\w\-]{0,255}$")  # MLflow's own rule for run ids
#: where training's fallback store lives in its run folder (empdg.tracking.resilient_logger)
FALLBACK_STORES = ("mlruns/mlflow.db", "mlruns_fallback/mlflow.db")


def _sqlite_path(uri: str, base: Path | None = None) -> Path | None:
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return None
    text = uri[len(prefix) :].partition("?")[0]
    if not text or text.startswith("file:"):
        return None
    path = Path(text).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    return path.resolve()


def _local_store(uri: str, base: Path | None = None) -> tuple[str, Path] | None:
    """``(kind, path)`` of a local store URI (``sqlite`` file or ``file`` store folder), None for anything else."""
    if uri.startswith("sqlite:"):
        path = _sqlite_path(uri, base)
        return ("sqlite", path) if path is not None else None
    parsed = urlparse(uri)
    if parsed.scheme == "file" and parsed.netloc in ("", "localhost") and parsed.path:
        return "file", Path(unquote(parsed.path)).resolve()
    if not parsed.scheme and uri and uri.partition("-")[0] not in ("databricks", "uc"):  # a bare path: a file store
        path = Path(uri).expanduser()
        return "file", (path if path.is_absolute() or base is None else base / path).resolve()
    return None


def _store_uri(kind: str, path: Path) -> str | None:
    """The URI of an EXISTING local store (None when it does not exist: opening it would create it)."""
    if kind == "sqlite":
        return f"sqlite:///{path}" if path.is_file() else None
    return path.as_uri() if path.is_dir() else None


def _strictly_inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path != folder and path.is_relative_to(folder)


def _own_store(eval_uri: str | None) -> str | None:
    """The evaluation's own store as a URI to search: local ones only when they exist, servers as given."""
    if not eval_uri:
        return None
    local = _local_store(str(eval_uri))
    if local is None:
        return None if str(eval_uri).startswith("sqlite:") else str(eval_uri)
    return _store_uri(*local)


def _run_folder_stores(run_folder: Path, run_config: Mapping[str, Any] | None = None) -> list[str]:
    """Existing local stores strictly inside ``run_folder`` (training's fallback, or one the folder names)."""
    run_root = run_folder.parents[2] if len(run_folder.parents) > 2 else run_folder
    named: list[tuple[str, Path | None]] = [(f"sqlite:///{run_folder / name}", None) for name in FALLBACK_STORES]
    record = read_run_record(run_folder)
    config_uri = ((run_config or {}).get("logger") or {}).get("tracking_uri")
    for uri in (record or {}).get("tracking_uri"), config_uri:
        if isinstance(uri, str) and uri:
            named += [(uri, run_root), (uri, run_folder)]
    uris = []
    for uri, base in named:
        local = _local_store(uri, base)
        if local is None or not _strictly_inside(local[1], run_folder):
            continue  # a server or a store elsewhere: never contacted on the word of a run folder
        found = _store_uri(*local)
        if found is not None and found not in uris:
            uris.append(found)
    return uris


def candidate_stores(run_folder: Path, eval_uri: str | None, run_config: Mapping[str, Any] | None = None) -> list[str]:
    """Tracking URIs that may hold the training run, the evaluation's own first, without duplicates.

    The evaluation's own store (servers as given, local stores only when they exist), then the existing local
    stores strictly inside ``run_folder``. A URI written in the run folder (``mlflow_run.json``, ``config.yaml``)
    is listed only when it is one of those: a run folder never sends the evaluation to another store.
    """
    run_folder = Path(run_folder).resolve()
    uris = [uri for uri in [_own_store(eval_uri)] if uri]
    return uris + [uri for uri in _run_folder_stores(run_folder, run_config) if uri not in uris]


def _quoted(value: str) -> str | None:
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    return None


def _is_evaluation(run: Any) -> bool:
    return run.data.tags.get("empdg.role") == "evaluation" or TRAIN_RUN_TAG in run.data.tags


def _artifacts_inside(location: str | None, run_folder: Path) -> bool:
    local = _local_store(str(location or ""))
    return local is not None and local[0] == "file" and _strictly_inside(local[1], run_folder)


def _training_run(client: Any, run: Any, uri: str, run_folder: Path, own: bool) -> TrainingRun | None:
    experiment = client.get_experiment(run.info.experiment_id)
    if not own and not _artifacts_inside(experiment.artifact_location, run_folder):
        log.warning(
            "not linking to run %s of the store %s in the run folder: its experiment keeps artifacts at %s, "
            "outside the run folder", run.info.run_id, uri, experiment.artifact_location,
        )  # fmt: skip
        return None
    return TrainingRun(run.info.run_id, uri, run.info.experiment_id, experiment.name, run.info.run_name)


def _search_store(uri: str, run_folder: Path, run_id: str | None, own: bool = True) -> TrainingRun | None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    if run_id:
        try:
            run = client.get_run(run_id)
        except Exception:  # not in this store
            run = None
        return None if run is None or _is_evaluation(run) else _training_run(client, run, uri, run_folder, own)
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
        runs = [r for r in runs if not _is_evaluation(r)]
        if runs:
            return _training_run(client, runs[0], uri, run_folder, own)
    return None


def find_training_run(
    run_folder: str | Path, eval_uri: str | None = None, run_config: Mapping[str, Any] | None = None
) -> TrainingRun | None:
    """The MLflow run that trained in ``run_folder``, or None (never raises: linking is best effort).

    Searches only :func:`candidate_stores` (the evaluation's own store, local stores inside the run folder);
    from ``mlflow_run.json`` only the run id is taken.
    """
    run_folder = Path(run_folder).resolve()
    record = read_run_record(run_folder)
    run_id = str(record["run_id"]) if record else None
    if run_id is not None and not _RUN_ID.match(run_id):
        log.warning("ignoring the run id %r in %s: not an MLflow run id", run_id[:80], run_folder / RUN_RECORD_FILE)
        run_id = None
    own = _own_store(eval_uri)
    stores = candidate_stores(run_folder, eval_uri, run_config)
    for wanted in [run_id, None] if run_id else [None]:  # the recorded id first, then the folder's tag/param
        for uri in stores:
            try:
                found = _search_store(uri, run_folder, wanted, own=uri == own)
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
    run: TrainingRun,
    metrics: Mapping[str, Any],
    subset: str,
    eval_run_id: str | None = None,
    decoding: str = "greedy",
) -> dict[str, float]:
    """Log the finite numeric ``metrics`` onto the training run as ``<prefix>/<name>``; returns what was logged.

    Also tags the training run with ``empdg.eval_run.<subset>`` (``.<decoding>`` appended when not greedy) =
    ``eval_run_id`` (where its predictions are).
    """
    from mlflow.entities import Metric, RunTag
    from mlflow.tracking import MlflowClient

    prefix = subset_metric_prefix(subset, decoding)
    logged = {f"{prefix}/{key}": value for key, value in _finite_numbers(metrics).items()}
    now = int(time.time() * 1000)
    tag = f"{EVAL_RUN_TAG}.{subset}" + ("" if decoding == "greedy" else f".{decoding}")
    tags = [RunTag(tag, eval_run_id)] if eval_run_id else []
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
