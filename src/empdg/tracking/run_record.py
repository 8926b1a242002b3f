"""What identifies a run: its tags, the dataset input it trained on, and its run record.

The run record: ``<run folder>/mlflow_run.json`` names the MLflow run a training run logged to.
Training writes it once its run exists; evaluations read only the run id from it (see
:mod:`empdg.evaluation.run_link` for which stores they trust).
"""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path
from typing import Any

from empdg.tracking.store import quick_http

log = logging.getLogger(__name__)

RUN_RECORD_FILE = "mlflow_run.json"
#: the dataset input's context: the run trains on the data's train split and validates on its valid split
DATASET_CONTEXT = "train"


def dataset_input(name: str, source: str | Path, digest: str) -> Any:
    """An MLflow dataset input naming the data a run trained on (metadata only: nothing is uploaded).

    ``source``: a local path (the data folder or the preprocessing cache file); ``digest``: the
    preprocessing cache's hash, the same for every run trained on the same examples.
    """
    from mlflow.data.dataset_source_registry import get_dataset_source_from_json
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag

    # by type name: MLflow generates LocalArtifactDatasetSource at import time (it cannot be imported)
    located = get_dataset_source_from_json(json.dumps({"uri": str(source)}), "local")
    dataset = MetaDataset(located, name=name, digest=digest)
    return DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", DATASET_CONTEXT)])


def run_tags(cfg: Any, dataset: str | None = None) -> dict[str, str]:
    """The tags of every training run (and sweep trial): commit, dataset, model, ablation, experiment.

    ``dataset`` defaults to ``data.name``; training passes ``name:<cache id>`` once the data is prepared.
    """
    return {
        "git_commit": code_commit(),
        "dataset": dataset or str(cfg.data.name),
        "model": str(cfg.model.name),
        "ablation": str(cfg.ablation.name),
        "experiment": str(cfg.experiment_name),
    }


def code_commit() -> str:
    """The git commit of empdg's own source; "unknown" for an installed copy (a wheel) or outside git."""
    here = Path(__file__).resolve().parent
    return "unknown" if "site-packages" in here.parts else git_commit(here)


def git_commit(cwd: Path | None = None) -> str:
    """The HEAD commit of the git checkout at ``cwd``; "unknown" without git or outside a checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


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


def record_training_run(logger: Any, run_folder: str | Path) -> Path | None:
    """Write the run record of an MLflow ``logger``'s run into ``run_folder`` (never raises; None: not written).

    What training calls once its run exists. The store written is the one the logger logs to now (its local
    fallback after a failed start); evaluations read only the run id from it.
    """
    try:
        from pytorch_lightning.loggers import MLFlowLogger

        if not isinstance(logger, MLFlowLogger):
            return None
        run_id = logger.run_id
        if not run_id:
            return None
        fallback = getattr(logger, "fallback", None)
        uri = getattr(logger, "fallback_uri", None) if fallback is not None else None
        uri = uri or getattr(logger, "_tracking_uri", None) or ""
        return write_run_record(run_folder, str(run_id), str(uri), getattr(logger, "experiment_id", None))
    except Exception as error:  # tracking is never fatal
        log.warning("could not write %s in %s: %s", RUN_RECORD_FILE, run_folder, error)
        return None


def checkpoint_run_folder(ckpt_path: str | Path) -> Path:
    """The run folder a checkpoint belongs to: ``<run>/checkpoints/x.ckpt`` -> ``<run>``."""
    parent = Path(ckpt_path).expanduser().resolve().parent
    return parent.parent if parent.name == "checkpoints" else parent


def close_orphaned_run(run_folder: str | Path, keep_run_id: str | None = None) -> str | None:
    """When a run is resumed: close the MLflow run its folder's record names if it is still RUNNING.

    A process killed outright (SIGKILL, out of memory, power loss) never ends its MLflow run, which then
    shows RUNNING forever; resuming its checkpoint is the proof that it is dead, so it is marked KILLED.
    ``keep_run_id``: the run this process itself logs to (``logger.run_id``), never closed. Returns a
    sentence for the run summary (None: no record). Never raises: tracking is never fatal.
    """
    record = read_run_record(run_folder)
    if record is None:
        return None
    run_id, uri = str(record["run_id"]), str(record.get("tracking_uri") or "")
    if keep_run_id is not None and run_id == str(keep_run_id):
        return f"continues MLflow run {run_id}"
    database = uri[len("sqlite:///") :].partition("?")[0] if uri.startswith("sqlite:///") else None
    if database and not database.startswith("file:") and not Path(database).is_file():  # never create a store
        return f"its MLflow run {run_id} was in {uri}, which is gone"
    try:
        from mlflow.tracking import MlflowClient

        with quick_http():
            client = MlflowClient(tracking_uri=uri)
            status = client.get_run(run_id).info.status
            if status != "RUNNING":
                return f"its MLflow run {run_id} ended {status}"
            client.set_terminated(run_id, "KILLED")
        return f"closed its MLflow run {run_id}, left RUNNING by a killed process: now KILLED"
    except Exception as error:  # tracking is never fatal
        log.warning("could not check MLflow run %s of %s in %s: %s", run_id, run_folder, uri, error)
        return None
