"""The resilient MLflow logger: tracking is never fatal, neither at start nor later.

A run must not fail because of its tracking store:

- at start the store must accept a WRITE (the run is created and tagged there); when it does not
  (unreachable server, read-only database) the run warns and logs to a SQLite store inside its own
  folder, ``<run>/mlruns/mlflow.db``;
- after start every call to the store (metrics, params, artifacts, closing the run) is guarded by
  :class:`ResilientMLFlowLogger`: the first failure is warned about once, the rest of the run goes
  to that same local fallback store (params and earlier artifacts are copied there so the fallback
  run stands alone), training goes on, and at the end :func:`describe_run` says which part of the
  run is in which store (the detail per metric is written to ``<run>/tracking_report.json``).

The store itself (its URI, the start-up check, MLflow's HTTP settings) is :mod:`empdg.tracking.store`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning_fabric.utilities.logger import _convert_params, _flatten_dict
from lightning_fabric.utilities.rank_zero import rank_zero_only
from pytorch_lightning.loggers import CSVLogger, Logger, MLFlowLogger
from pytorch_lightning.loggers.logger import rank_zero_experiment

from empdg.tracking.logger_settings import logger_problems
from empdg.tracking.run_record import dataset_input
from empdg.tracking.store import (
    absolute_sqlite_uri,
    client_side_artifact_uri,
    configure_http,
    error_text,
    experiment_artifact_location,
    is_server_uri,
    mark_experiment_kind,
    quick_http,
    run_page_url,
    sqlite_store_lock,
)

log = logging.getLogger(__name__)

FALLBACK_DIR = "mlruns"
REPORT_FILE = "tracking_report.json"


class TrackingFallbackWarning(UserWarning):
    """The tracking store failed; the run goes on with a local fallback store."""


class ClientArtifactsWarning(UserWarning):
    """A tracking server hands out artifact locations on the client's disk (it does not serve artifacts)."""


@dataclass
class Ledger:
    """What one store received: params, metrics (per key: values, first and last step), artifacts."""

    params: set[str] = field(default_factory=set)
    metrics: dict[str, list[int]] = field(default_factory=dict)  # key -> [count, first step, last step]
    artifacts: list[str] = field(default_factory=list)

    def add_metrics(self, metrics: Mapping[str, Any], step: int) -> None:
        for key in metrics:
            entry = self.metrics.get(key)
            if entry is None:
                self.metrics[key] = [1, step, step]
            else:
                entry[0] += 1
                entry[1], entry[2] = min(entry[1], step), max(entry[2], step)

    def empty(self) -> bool:
        return not (self.params or self.metrics or self.artifacts)

    def summary(self) -> str:
        parts = [f"{len(self.params)} params"]
        if self.metrics:
            values = sum(e[0] for e in self.metrics.values())
            first = min(e[1] for e in self.metrics.values())
            last = max(e[2] for e in self.metrics.values())
            parts.append(f"{len(self.metrics)} metrics ({values} values, steps {first}-{last})")
        else:
            parts.append("no metrics")
        parts.append("artifacts: " + (", ".join(self.artifacts) if self.artifacts else "none"))
        return "; ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        metrics = sorted(self.metrics.items())
        return {
            "params": sorted(self.params),
            "metrics": {k: {"values": c, "first_step": a, "last_step": b} for k, (c, a, b) in metrics},
            "artifacts": list(self.artifacts),
        }


class ResilientMLFlowLogger(MLFlowLogger):
    """An ``MLFlowLogger`` whose store may fail at any moment without stopping training.

    Every call that reaches the store is guarded. On the first failure the logger warns once,
    opens a run in the local fallback store (``fallback_uri``, in the run folder), copies the
    params and the still existing artifacts there, and sends everything that follows to it; if
    even the fallback fails, tracking of the rest of the run is dropped (and counted). ``experiment``
    and ``run_id`` then point at the fallback, so code using them directly follows along.
    """

    def __init__(
        self,
        *,
        fallback_uri: str,
        fallback_artifacts: Path,
        report_file: Path | None = None,
        startup_note: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.fallback_uri = fallback_uri
        self.fallback_artifacts = Path(fallback_artifacts)
        self.report_file = report_file
        self.startup_note = startup_note  # the primary failed its start-up check: this logger IS the fallback
        self.failure: str | None = None  # first error of the store during the run
        self.fallback_failure: str | None = None
        self._fallback: MLFlowLogger | None = None
        self._dropped = False
        self._primary_marked = False
        self.killed = False  # stopped by a signal: Lightning's finalize("failed") marks the run KILLED
        self._params: dict[str, Any] = {}
        self._artifact_files: list[tuple[str, str | None]] = []
        self.ledgers = {"primary": Ledger(), "fallback": Ledger(), "dropped": Ledger(), "refused": Ledger()}

    # ---- where the calls go
    @property
    def primary_uri(self) -> str:
        return self._tracking_uri

    @property
    def primary_run_id(self) -> str | None:
        return self._run_id

    @property
    def fallback(self) -> MLFlowLogger | None:
        return self._fallback

    @property
    @rank_zero_experiment
    def experiment(self):
        if self._fallback is not None:
            return self._fallback.experiment
        return super().experiment

    @property
    def run_id(self) -> str | None:
        if self._fallback is not None:
            return self._fallback.run_id
        _ = self.experiment
        return self._run_id

    @property
    def experiment_id(self) -> str | None:
        if self._fallback is not None:
            return self._fallback.experiment_id
        _ = self.experiment
        return self._experiment_id

    def start(self, run_folder: Path | None = None) -> None:
        """Create (or open) the run and write a tag to it: the start-up write check. Raises on failure."""
        if rank_zero_only.rank != 0:
            return
        client = super().experiment  # creates the experiment and the run unless run_id was given
        client.set_tag(self._run_id, "empdg.run_folder", str(run_folder or ""))
        mark_experiment_kind(client, self._experiment_id)
        if is_server_uri(self._tracking_uri):
            warn_client_side_artifacts(self._tracking_uri, client.get_run(self._run_id))

    def _route(self, what: str, primary: Callable[[], None], fallback: Callable[[MLFlowLogger], None]) -> str:
        """Run ``primary`` (or ``fallback`` once switched); return the store that took it.

        A store that answers but refuses the data (a param logged again with another value) is not
        failing: the call is reported and skipped, and the run stays where it is.
        """
        if self._fallback is None and not self._dropped:
            try:
                primary()
                return "primary"
            except Exception as error:
                if _refused(error):
                    log.warning("MLflow refused %s: %s", what, error_text(error))
                    return "refused"
                self._switch(what, error)
        if self._fallback is not None and not self._dropped:
            try:
                fallback(self._fallback)
                return "fallback"
            except Exception as error:
                if _refused(error):
                    log.warning("MLflow refused %s: %s", what, error_text(error))
                    return "refused"
                self._drop(what, error)
        return "dropped"

    def _switch(self, what: str, error: BaseException) -> None:
        self.failure = f"{what}: {error_text(error)}"
        try:
            self._fallback = self._open_fallback()
        except Exception as fallback_error:
            self._fallback = None
            self._dropped = True
            self.fallback_failure = error_text(fallback_error)
            warnings.warn(
                f"MLflow tracking store {self.primary_uri} failed during the run ({self.failure}) and the local "
                f"fallback {self.fallback_uri} cannot be opened ({self.fallback_failure}); training goes on "
                "untracked (checkpoints and config.yaml are in the run folder)",
                TrackingFallbackWarning,
                stacklevel=4,
            )
            return
        warnings.warn(
            f"MLflow tracking store {self.primary_uri} failed during the run ({self.failure}); training goes on "
            f"and logs the rest of this run to the local fallback store {self.fallback_uri} (run "
            f"{self._fallback.run_id}). The summary at the end says which part went where.",
            TrackingFallbackWarning,
            stacklevel=4,
        )

    def _open_fallback(self) -> MLFlowLogger:
        self.fallback_artifacts.parent.mkdir(parents=True, exist_ok=True)  # the store's folder
        tags = {
            **{str(k): str(v) for k, v in (self.tags or {}).items()},
            "empdg.tracking.primary_uri": self.primary_uri,
            "empdg.tracking.primary_run_id": str(self._run_id),
            "empdg.tracking.primary_error": (self.failure or "")[:4000],
        }
        fallback = MLFlowLogger(
            experiment_name=self._experiment_name,
            run_name=self._run_name,
            tracking_uri=self.fallback_uri,
            tags=tags,
            artifact_location=self.fallback_artifacts.resolve().as_uri(),
        )
        client = fallback.experiment
        mark_experiment_kind(client, fallback.experiment_id)
        if self._params:  # the fallback run stands alone: it gets every param logged so far
            MLFlowLogger.log_hyperparams(fallback, self._params)
            self.ledgers["fallback"].params.update(self._params)
        for local_path, artifact_path in self._artifact_files:
            if Path(local_path).exists():
                client.log_artifact(fallback.run_id, local_path, artifact_path)
                self.ledgers["fallback"].artifacts.append(_artifact_name(local_path, artifact_path) + " (copy)")
        return fallback

    def _drop(self, what: str, error: BaseException) -> None:
        self._dropped = True
        self.fallback_failure = f"{what}: {error_text(error)}"
        warnings.warn(
            f"the local fallback tracking store {self.fallback_uri} failed too ({self.fallback_failure}); "
            "training goes on without tracking",
            TrackingFallbackWarning,
            stacklevel=4,
        )

    # ---- Logger API, guarded
    @rank_zero_only
    def log_hyperparams(self, params: Any) -> None:
        params = _flatten_dict(_convert_params(params))
        self._params.update(params)
        store = self._route(
            "log_hyperparams",
            lambda: MLFlowLogger.log_hyperparams(self, params),
            lambda fallback: MLFlowLogger.log_hyperparams(fallback, params),
        )
        self.ledgers[store].params.update(params)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        store = self._route(
            f"log_metrics at step {step}",
            lambda: MLFlowLogger.log_metrics(self, metrics, step),
            lambda fallback: fallback.log_metrics(metrics, step),
        )
        self.ledgers[store].add_metrics(metrics, step or 0)

    @rank_zero_only
    def log_artifact(self, local_path: Path, artifact_path: str | None = None) -> None:
        local = str(local_path)
        self._artifact_files.append((local, artifact_path))
        store = self._route(
            f"log_artifact {Path(local).name}",
            lambda: self._mlflow_client.log_artifact(self._run_id, local, artifact_path),
            lambda fallback: fallback.experiment.log_artifact(fallback.run_id, local, artifact_path),
        )
        self.ledgers[store].artifacts.append(_artifact_name(local, artifact_path))

    @rank_zero_only
    def log_dataset(self, dataset: Any) -> None:
        """Log a dataset input (:func:`dataset_input`) to the run, guarded like every other call."""
        self._route(
            "log_inputs",
            lambda: self._mlflow_client.log_inputs(self._run_id, datasets=[dataset]),
            lambda fallback: fallback.experiment.log_inputs(fallback.run_id, datasets=[dataset]),
        )

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        if not self._initialized:
            return
        if self.killed and status == "failed":
            status = "KILLED"
        self._route("finalize", lambda: MLFlowLogger.finalize(self, status), lambda fallback: fallback.finalize(status))
        if self._fallback is not None:
            self._mark_primary_incomplete()
        self.write_report()

    def _mark_primary_incomplete(self) -> None:
        """Best effort (one quick try): the primary run says where the rest went and stops RUNNING."""
        if self._run_id is None or self._fallback is None or self._primary_marked:
            return
        self._primary_marked = True  # a server still down must not cost a timeout at every finalize
        try:
            with quick_http():
                note = f"incomplete: the rest of this run is in {self.fallback_uri} run {self._fallback.run_id}"
                self._mlflow_client.set_tag(self._run_id, "empdg.tracking", note)
                self._mlflow_client.set_terminated(self._run_id, "FAILED")
        except Exception as error:  # still failing: the report in the run folder says it all
            log.debug("primary tracking store still failing: %s", error)

    # ---- the account
    def report(self) -> dict[str, Any]:
        stores: dict[str, Any] = {
            "primary": {"uri": self.primary_uri, "run_id": self._run_id, **self.ledgers["primary"].as_dict()}
        }
        if self._fallback is not None or not self.ledgers["fallback"].empty():
            stores["fallback"] = {
                "uri": self.fallback_uri,
                "run_id": self._fallback.run_id if self._fallback is not None else None,
                **self.ledgers["fallback"].as_dict(),
            }
        for name in ("dropped", "refused"):
            if not self.ledgers[name].empty():
                stores[name] = self.ledgers[name].as_dict()
        return {
            "startup_fallback": self.startup_note,
            "primary_error": self.failure,
            "fallback_error": self.fallback_failure,
            "stores": stores,
        }

    def _noteworthy(self) -> bool:
        return self.failure is not None or self.startup_note is not None or not self.ledgers["refused"].empty()

    def write_report(self) -> None:
        """``<run>/tracking_report.json``: every metric's first and last step in each store (only when it matters)."""
        if self.report_file is None or not self._noteworthy():
            return
        with contextlib.suppress(OSError):
            self.report_file.write_text(json.dumps(self.report(), indent=2) + "\n", encoding="utf-8")

    def describe(self) -> str:
        """Where the run went: one store, or which part went to the primary and which to the fallback."""
        self.write_report()
        refused = self.ledgers["refused"]
        if self.failure is None:
            uri = self.primary_uri
            lines = [f"MLflow run {self._run_id} in experiment '{self._experiment_name}' at {uri}"]
            if self.startup_note:
                lines.append(f"  (local fallback: {self.startup_note})")
            if not refused.empty():
                lines.append(f"  refused by the store: {refused.summary()} (detail: {self.report_file})")
            lines.append(_open_lines(uri, self._experiment_id, self._run_id))
            return "\n".join(lines)
        lines = [
            f"MLflow tracking was split: the store {self.primary_uri} failed during the run ({self.failure}).",
            f"  primary  {self.primary_uri} run {self._run_id}: {self.ledgers['primary'].summary()}",
        ]
        if self._fallback is not None or not self.ledgers["fallback"].empty():
            run = self._fallback.run_id if self._fallback is not None else None
            lines.append(f"  fallback {self.fallback_uri} run {run}: {self.ledgers['fallback'].summary()}")
        if not self.ledgers["dropped"].empty():
            lines.append(f"  lost (fallback failed too: {self.fallback_failure}): {self.ledgers['dropped'].summary()}")
        if not refused.empty():
            lines.append(f"  refused by the store: {refused.summary()}")
        if self.report_file is not None:
            lines.append(f"  per-metric detail: {self.report_file}")
        lines.append(f"  open them with: mlflow ui --backend-store-uri {self.primary_uri}")
        lines.append(f"                  mlflow ui --backend-store-uri {self.fallback_uri}")
        return "\n".join(lines)


def warn_client_side_artifacts(uri: str, run: Any) -> None:
    """Warn when a server's run keeps its artifacts at a path of this machine (they would stay here)."""
    artifact_uri = run.info.artifact_uri
    if client_side_artifact_uri(artifact_uri):
        warnings.warn(
            f"the tracking server {uri} gives run {run.info.run_id} the artifact location {artifact_uri}, a path "
            "that this machine writes to, so its artifacts stay here: start the server with artifact serving "
            "(`mlflow server --serve-artifacts --artifacts-destination ...`, the default without "
            "--default-artifact-root) and use an experiment created since (a new logger.experiment_name)",
            ClientArtifactsWarning,
            stacklevel=3,
        )


def _refused(error: BaseException) -> bool:
    """The store answered and rejected the request (e.g. a param changing value): not a store failure."""
    return getattr(error, "error_code", None) in ("INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS")


def _artifact_name(local_path: str, artifact_path: str | None) -> str:
    name = Path(local_path).name
    return f"{artifact_path}/{name}" if artifact_path else name


def _fallback_location(output_dir: Path, primary_uri: str) -> tuple[str, Path]:
    """The fallback store's URI and artifact folder, in the run folder (created only if it is used)."""
    folder = output_dir / FALLBACK_DIR
    uri = absolute_sqlite_uri(f"sqlite:///{folder / 'mlflow.db'}", create=False)
    if uri == primary_uri:  # the primary store already lives in the run folder
        folder = output_dir / "mlruns_fallback"
        uri = absolute_sqlite_uri(f"sqlite:///{folder / 'mlflow.db'}", create=False)
    return uri, folder / "artifacts"


def build_logger(logger_cfg: Mapping[str, Any], output_dir: Path, tags: Mapping[str, str]) -> Logger | None:
    name = logger_cfg["name"]
    if name == "none":
        return None
    if name == "csv":
        return CSVLogger(save_dir=str(output_dir), name="csv")
    if name != "mlflow":
        raise ValueError(logger_problems(logger_cfg)[0])
    configure_http(logger_cfg)
    uri = absolute_sqlite_uri(str(logger_cfg["tracking_uri"]))
    artifacts = experiment_artifact_location(uri, logger_cfg.get("artifact_location"))  # None for a server
    fallback_uri, fallback_artifacts = _fallback_location(output_dir, uri)
    all_tags = {**dict(tags), **{str(k): str(v) for k, v in (logger_cfg.get("extra_tags") or {}).items()}}
    common = {
        "experiment_name": str(logger_cfg["experiment_name"]),
        "run_name": str(logger_cfg["run_name"]),
        "fallback_uri": fallback_uri,
        "fallback_artifacts": fallback_artifacts,
        "report_file": output_dir / REPORT_FILE,
    }
    logger: ResilientMLFlowLogger | None = None
    try:  # MLflow opens the store when the client is built: a broken SQLite path fails right here
        with sqlite_store_lock(uri):  # runs started at once on a fresh store: one creates it, all land in it
            logger = ResilientMLFlowLogger(
                tracking_uri=uri,
                tags=dict(all_tags),
                artifact_location=artifacts,
                run_id=logger_cfg.get("run_id"),
                **common,
            )
            logger.start(output_dir)  # the start-up check: create/open the run and write a tag to it
        return logger
    except Exception as error:
        problem = error_text(error)
    warnings.warn(
        f"MLflow tracking store {uri} is unreachable or not writable ({problem}); logging to the local "
        f"fallback {fallback_uri} instead. Inspect it with: mlflow ui --backend-store-uri {fallback_uri}",
        TrackingFallbackWarning,
        stacklevel=2,
    )
    # the run may already exist in the primary store (created, then the tag failed): close it if we can
    if logger is not None and logger._run_id is not None and logger_cfg.get("run_id") is None:
        with contextlib.suppress(Exception), quick_http():
            logger._mlflow_client.set_terminated(logger._run_id, "FAILED")
    startup_note = f"{uri} failed its start-up check: {problem}"
    second_uri, second_artifacts = _fallback_location(output_dir, fallback_uri)
    try:
        fallback_artifacts.parent.mkdir(parents=True, exist_ok=True)  # the store's folder
        local = ResilientMLFlowLogger(
            tracking_uri=fallback_uri,
            tags={**all_tags, "empdg.tracking.primary_uri": uri, "empdg.tracking.primary_error": problem[:4000]},
            artifact_location=fallback_artifacts.resolve().as_uri(),
            startup_note=startup_note,
            **{**common, "fallback_uri": second_uri, "fallback_artifacts": second_artifacts},
        )
        local.start(output_dir)
    except Exception as error:  # not even the run folder takes a SQLite file: no tracking at all
        warnings.warn(
            f"the local fallback tracking store {fallback_uri} failed too ({error_text(error)}); "
            "this run is not tracked (its checkpoints and config are in its folder)",
            TrackingFallbackWarning,
            stacklevel=2,
        )
        return None
    return local


def log_artifact(logger: Logger | None, local_path: Path, artifact_path: str | None = None) -> None:
    """Attach a file to the run; for loggers without artifacts it already lives in the run folder."""
    if isinstance(logger, ResilientMLFlowLogger):
        logger.log_artifact(local_path, artifact_path)
    elif isinstance(logger, MLFlowLogger):
        try:
            logger.experiment.log_artifact(logger.run_id, str(local_path), artifact_path)
        except Exception as error:  # tracking is never fatal
            log.warning("could not log artifact %s to MLflow: %s", local_path, error_text(error))
    elif isinstance(logger, CSVLogger) and logger.log_dir:
        target = Path(logger.log_dir) / (artifact_path or "")
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(local_path, target / local_path.name)


def log_dataset(logger: Logger | None, name: str, source: str | Path, digest: str) -> None:
    """Log the data a run trained on as an MLflow dataset input (the Datasets column); other loggers: nothing."""
    if not isinstance(logger, MLFlowLogger):
        return
    try:
        dataset = dataset_input(name, source, digest)
        if isinstance(logger, ResilientMLFlowLogger):
            logger.log_dataset(dataset)
        else:
            logger.experiment.log_inputs(logger.run_id, datasets=[dataset])
    except Exception as error:  # tracking is never fatal
        log.warning("could not log dataset %s to MLflow: %s", name, error_text(error))


def _open_lines(uri: str, experiment_id: str | None, run_id: str | None) -> str:
    url = run_page_url(uri, experiment_id, run_id)
    if is_server_uri(uri):
        return f"  open it at: {url}"
    return f"  open it with: mlflow ui --backend-store-uri {uri}\n  then: {url}"


def describe_run(logger: Logger | None, output_dir: Path) -> str:
    """Where the run's results are: the store(s), and for a split run which part went where."""
    if isinstance(logger, ResilientMLFlowLogger):
        return logger.describe()
    if isinstance(logger, MLFlowLogger):
        uri = logger._tracking_uri
        where = f"MLflow run {logger.run_id} in experiment '{logger._experiment_name}' at {uri}"
        return where + "\n" + _open_lines(uri, logger.experiment_id, logger.run_id)
    if isinstance(logger, CSVLogger):
        return f"CSV metrics in {logger.log_dir}"
    return f"run folder {output_dir} (no metrics logger)"
