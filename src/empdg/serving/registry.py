"""Register a training run's checkpoint as an MLflow model (``empdg-register``, ``logger.register_model``).

The training run is found in the given tracking store by its id; its run folder by the run's
``empdg.run_folder`` tag (set when training opens its run) or its ``paths.output_dir`` param; the checkpoint
in ``<run folder>/checkpoints``: the best one (the one ``last.ckpt`` names as best, else the only
``best-*.ckpt``), else ``last.ckpt`` -- or the one given. An evaluation run's id stands for the training run it
evaluated. The model is logged into a new run of the training run's experiment, a child of it (tag
``mlflow.parentRunId``, ``empdg.registered_from``), so the training run itself is never reopened, and
registered under a name: every registration is a new version.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from empdg.config import CONFIG_DIR
from empdg.errors import ConfigError, MissingFileError, user_errors_from
from empdg.evaluation.run_link import RUN_FOLDER_TAG, TRAIN_RUN_TAG

log = logging.getLogger(__name__)

REGISTERED_FROM_TAG = "empdg.registered_from"
CHECKPOINT_CHOICES = ("auto", "best", "last")
_RUN_ID = re.compile(r"^[a-zA-Z0-9][\w\-]{0,255}$")
#: the script MLflow runs to build the model when loading it (see its docstring)
MODEL_CODE = Path(__file__).with_name("model_code.py")


@dataclass(frozen=True)
class Registration:
    """What was registered, printed as the command's last line."""

    name: str
    version: str
    model_uri: str
    logged_model_uri: str
    run_id: str
    training_run_id: str
    checkpoint: str
    tracking_uri: str

    def as_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


def default_tracking_uri(mlflow_dir: str | Path) -> str:
    """``$MLFLOW_TRACKING_URI``, else training's default store ``sqlite:///<mlflow_dir>/mlflow.db`` (absolute)."""
    from_env = os.environ.get("MLFLOW_TRACKING_URI")
    if from_env:
        return from_env
    return f"sqlite:///{(Path(mlflow_dir).expanduser().resolve() / 'mlflow.db').as_posix()}"


def _check_store(uri: str) -> None:
    """A local SQLite store must exist: opening a missing one would create an empty store."""
    if uri.startswith("sqlite:///") and not uri[len("sqlite:///") :].startswith("file:"):
        path = Path(uri[len("sqlite:///") :].partition("?")[0]).expanduser()
        if not path.is_file():
            raise MissingFileError(
                f"there is no MLflow store at {path}; pass tracking_uri=... (or set MLFLOW_TRACKING_URI) to the "
                "store the run was logged to"
            )


def find_run(client: Any, run_id: str, tracking_uri: str) -> Any:
    """The training run ``run_id`` (an evaluation run's id stands for its training run)."""
    if not _RUN_ID.match(run_id or ""):
        raise ConfigError(f"run_id={run_id!r} is not an MLflow run id; pass run_id=<the training run's id>")
    try:
        run = client.get_run(run_id)
    except Exception:
        raise ConfigError(
            f"run_id={run_id} is not a run of the tracking store {tracking_uri}; pass the training run's id "
            "(its run folder's mlflow_run.json has it) and the store it was logged to with tracking_uri=... "
            "(or MLFLOW_TRACKING_URI)"
        ) from None
    trained = run.data.tags.get(TRAIN_RUN_TAG)
    return find_run(client, trained, tracking_uri) if trained and trained != run_id else run


def run_folder_of(run: Any) -> Path | None:
    """The run's folder, from its ``empdg.run_folder`` tag or its ``paths.output_dir`` param."""
    for value in (run.data.tags.get(RUN_FOLDER_TAG), run.data.params.get("paths.output_dir")):
        if value and Path(value).is_dir():
            return Path(value)
    return None


def choose_checkpoint(folder: Path, which: str = "auto") -> Path | None:
    """The checkpoint to serve: ``best`` (the best-*.ckpt that last.ckpt names, else the latest), ``last``,
    ``auto`` (best, else last); None when there is none."""
    from empdg.training.checkpoint import choose_checkpoint as choose

    if which not in CHECKPOINT_CHOICES:
        raise ConfigError(f"checkpoint={which!r} must be one of {CHECKPOINT_CHOICES} (or pass ckpt_path=PATH)")
    return choose(folder, which)


def _stage(
    ckpt: Path, run_folder: Path | None, stage: Path, decoding: Mapping[str, Any], chat: Mapping[str, Any]
) -> None:
    """The model's artifact folder: weights + hyper-parameters only, config.yaml, vocab.json, serving.json,
    and a pretrained generator's Hugging Face copy (``hf_model/``: its architecture is rebuilt from it)."""
    from empdg.data.vocab import vocab_from_spec
    from empdg.models.decoding import DecodingConfig
    from empdg.serving.chat_session import ChatSettings
    from empdg.serving.pyfunc_model import CHECKPOINT_FILE, SERVING_FILE
    from empdg.training.checkpoint import load_checkpoint_file, load_run_config, read_run_config

    with user_errors_from():  # not a checkpoint, or not an empdg one: `error: ckpt_path=...`
        checkpoint = load_checkpoint_file(ckpt)  # weights_only=True
    (stage / "checkpoints").mkdir(parents=True)
    # optimiser states, loops and callbacks are not needed to answer: a smaller model folder
    torch.save(
        {"hyper_parameters": checkpoint["hyper_parameters"], "state_dict": checkpoint["state_dict"]},
        stage / CHECKPOINT_FILE,
    )
    config = (run_folder / "config.yaml") if run_folder else ckpt.resolve().parent.parent / "config.yaml"
    if config.is_file():
        shutil.copyfile(config, stage / "config.yaml")
    hparams = checkpoint["hyper_parameters"]
    vocab_from_spec(hparams.get("vocab_spec"), list(hparams["vocab_tokens"])).save(stage / "vocab.json")
    hf_model = ckpt.resolve().parent.parent / "hf_model"
    if (hparams.get("model") or {}).get("pretrained"):
        if not (hf_model / "config.json").is_file():
            raise MissingFileError(
                f"{hf_model} is missing: a pretrained generator is served from the run's Hugging Face copy, "
                "which training writes at its end (re-run the training, or pass the checkpoint of a finished run)"
            )
        shutil.copytree(hf_model, stage / "hf_model")
    run_data = ((load_run_config(ckpt) or {}).get("data")) or None
    if run_data is None and config.is_file():
        run_data = read_run_config(config).get("data")
    try:
        settings = ChatSettings.from_config(chat, run_data, {})
        decoding_cfg = DecodingConfig.from_mapping(decoding)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    serving = {"chat": dataclasses.asdict(settings), "decoding": dataclasses.asdict(decoding_cfg)}
    (stage / SERVING_FILE).write_text(json.dumps(serving, indent=2) + "\n", encoding="utf-8")


def chat_defaults() -> dict[str, Any]:
    """The ``chat.*`` settings of ``conf/chat.yaml`` (their only defaults)."""
    return dict(OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "chat.yaml").chat, resolve=True))


HF_PACKAGES = ("transformers", "tokenizers", "safetensors", "peft")


def _pip_requirements(extra: tuple[str, ...] = ()) -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for package in ("empdg", "torch", "mlflow", *extra):
        try:
            found.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            found.append(package)
    return found


@contextlib.contextmanager
def process_uris(uri: str) -> Iterator[None]:
    """MLflow's process-wide tracking and registry URIs set to ``uri`` for the block, then put back as they were.

    ``mlflow.pyfunc.log_model`` has no per-call store. Putting the old values back through the public setters
    would pin the previously *resolved* URI, so a later ``MLFLOW_TRACKING_URI`` in this process (the next test,
    a notebook cell) would be ignored; the module variables are restored instead, unset stays unset.
    """
    import mlflow
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    saved = tracking_utils._tracking_uri, registry_utils._registry_uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        tracking_utils._tracking_uri, registry_utils._registry_uri = saved


def register_run(
    run_id: str,
    name: str,
    tracking_uri: str,
    *,
    checkpoint: str = "auto",
    ckpt_path: str | Path | None = None,
    decoding: Mapping[str, Any] | None = None,
    chat: Mapping[str, Any] | None = None,
) -> Registration:
    """Log the run's checkpoint as a pyfunc model in a child run and register it as a new version of ``name``."""
    import mlflow
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.tracking import MlflowClient

    if not name or not str(name).strip():
        raise ConfigError("name=... (the registered model's name) must not be empty")
    _check_store(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    run = find_run(client, str(run_id), tracking_uri)
    folder = run_folder_of(run)
    if ckpt_path:
        from empdg.training.checkpoint import resolve_checkpoint_path

        with user_errors_from():  # missing, not a regular file; a run folder stands for its best checkpoint
            ckpt = resolve_checkpoint_path(ckpt_path, "ckpt_path")
    else:
        ckpt = choose_checkpoint(folder, checkpoint) if folder is not None else None
        if ckpt is None:
            where = (
                f"{folder}/checkpoints" if folder else "its run folder (tag empdg.run_folder) is not on this machine"
            )
            raise MissingFileError(
                f"run {run.info.run_id} has no {checkpoint if checkpoint != 'auto' else 'best or last'} checkpoint "
                f"({where}); pass ckpt_path=PATH to its checkpoint"
            )
    # MLflow's model code is imported only here: a training run that registers nothing never loads it
    from empdg.serving.pyfunc_model import (
        ARTIFACT,
        INPUT_EXAMPLE,
        SERVING_FILE,
        EmpDGChatModel,
        input_schema,
        params_schema,
    )

    decoding = dict(decoding or {"strategy": "greedy"})
    chat = {**chat_defaults(), **dict(chat or {})}
    with tempfile.TemporaryDirectory(prefix="empdg-register-") as tmp:
        stage = Path(tmp) / ARTIFACT
        _stage(ckpt, folder, stage, decoding, chat)
        serving = json.loads((stage / SERVING_FILE).read_text(encoding="utf-8"))
        decoding, chat = serving["decoding"], serving["chat"]
        model = EmpDGChatModel()
        model.load_context(mlflow.pyfunc.PythonModelContext({ARTIFACT: str(stage)}, {}))
        example_output = model.predict(None, INPUT_EXAMPLE)
        outputs = infer_signature(None, example_output).outputs
        signature = ModelSignature(inputs=input_schema(), outputs=outputs, params=params_schema(decoding, chat))
        tags = {
            "mlflow.parentRunId": run.info.run_id,
            REGISTERED_FROM_TAG: run.info.run_id,
            "empdg.role": "registration",
            "empdg.checkpoint": str(ckpt.resolve()),
        }
        where = {"experiment_id": run.info.experiment_id, "run_name": f"register-{name}", "tags": tags}
        with process_uris(tracking_uri), mlflow.start_run(**where) as new:
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(MODEL_CODE),  # models from code: nothing is pickled
                artifacts={ARTIFACT: str(stage)},
                signature=signature,
                input_example=INPUT_EXAMPLE,
                # a pretrained generator also needs the Hugging Face stack where it is served
                pip_requirements=_pip_requirements(HF_PACKAGES if (stage / "hf_model").is_dir() else ()),
                registered_model_name=name,
            )
    version = str(info.registered_model_version)
    return Registration(
        name=name,
        version=version,
        model_uri=f"models:/{name}/{version}",
        logged_model_uri=info.model_uri,
        run_id=new.info.run_id,
        training_run_id=run.info.run_id,
        checkpoint=str(ckpt.resolve()),
        tracking_uri=tracking_uri,
    )


def register_run_folder(run_folder: str | Path, name: str, **kwargs: Any) -> Registration:
    """Register the run that trained in ``run_folder`` (its ``mlflow_run.json``: run id and store): the hook at
    the end of training, for a run this process has just written."""
    from empdg.tracking.run_record import read_run_record

    record = read_run_record(run_folder)
    if record is None or not record.get("tracking_uri"):
        raise ConfigError(
            f"{run_folder} has no MLflow run record (mlflow_run.json): logger.register_model needs logger=mlflow"
        )
    return register_run(str(record["run_id"]), name, str(record["tracking_uri"]), **kwargs)


def register_after_training(cfg: Any) -> Registration | None:
    """``logger.register_model=NAME``: register the run just trained (rank 0 only); None when not asked."""
    from pytorch_lightning.utilities import rank_zero_only

    from empdg.training.run import resolve_output_dir

    name = (cfg.get("logger") or {}).get("register_model")
    if not name or getattr(rank_zero_only, "rank", 0) != 0:
        return None
    return register_run_folder(resolve_output_dir(cfg), str(name))


def check_register_request(cfg: Any) -> None:
    """Before training: ``logger.register_model`` needs an MLflow run to register (fail now, not after the run)."""
    logger = cfg.get("logger") or {}
    if logger.get("register_model") and logger.get("name") != "mlflow":
        raise ConfigError(f"logger.register_model needs logger=mlflow (logger={logger.get('name')} has no MLflow run)")
