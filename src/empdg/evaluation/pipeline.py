"""One evaluation, as ``empdg-evaluate`` runs it: a checkpoint on a test split, or a prediction file.

Writes predictions (JSONL and the EmpDG release text format), a markdown metrics table and plots
into the output folder, logs all of it to a new MLflow run tagged with the checkpoint and subset
(a child of the checkpoint's training run when that run is found), and returns the metrics.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from empdg.data.conversation import EMOTIONS, SPLITS
from empdg.data.file_schema import MB, mb_to_bytes
from empdg.errors import ConfigError, is_number, seed_problems, user_errors_from, whole_problems
from empdg.evaluation.data_choice import choose_data_config, data_overrides_on_command_line
from empdg.evaluation.meaning import meaning_mode, score_meaning
from empdg.evaluation.prediction_record import DEFAULT_MAX_BYTES
from empdg.evaluation.release_format import PredictionFile, SystemChoiceError, load_predictions, write_release_file
from empdg.evaluation.reports import metrics_markdown, plot_confusion_matrix, plot_length_histogram
from empdg.evaluation.run_link import find_training_run, linked_logger_config, log_test_metrics
from empdg.evaluation.runner import (
    SUBSETS,
    EvaluationResult,
    evaluate_model,
    load_split,
    score_records,
    select_examples,
)
from empdg.evaluation.scored_examples import write_scored_jsonl
from empdg.models.decoding import DecodingConfig
from empdg.models.inference import inference_device
from empdg.tracking.resilient_logger import build_logger, describe_run, log_artifact
from empdg.tracking.store import configure_http
from empdg.training.checkpoint import load_checkpoint

log = logging.getLogger(__name__)


def output_folder(cfg: DictConfig) -> Path:
    path = Path(str(cfg.paths.output_dir)).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_outputs(result: EvaluationResult, out: Path, name: str, title: str, subset: str, source: str) -> list[Path]:
    """Predictions, tables and figures of one evaluation; returns the files written."""
    files = []
    if result.records:
        write_scored_jsonl(out / "predictions.jsonl", result.records, result.example_scores)
        write_release_file(out / f"pred_{name}.txt", result.records)
        files += [out / "predictions.jsonl", out / f"pred_{name}.txt"]
    (out / "metrics.json").write_text(json.dumps(result.metrics, indent=2) + "\n", encoding="utf-8")
    (out / "metrics.md").write_text(metrics_markdown(result.metrics, title, subset, source), encoding="utf-8")
    files += [out / "metrics.json", out / "metrics.md"]
    pred_lengths = [len(r.pred.split()) for r in result.records]
    files.append(plot_length_histogram(pred_lengths, result.ref_lengths, out / "length_histogram.png", title))
    if result.confusion is not None:
        labels = list(EMOTIONS[: len(result.confusion)])
        files.append(plot_confusion_matrix(result.confusion, labels, out / "emotion_confusion.png", title))
    return files


def log_to_mlflow(
    cfg: DictConfig,
    out: Path,
    tags: dict[str, str],
    metrics: dict,
    files: list[Path],
    run_folder: Path | None = None,
    run_config: dict[str, Any] | None = None,
) -> str | None:
    """A new tracking run holding parameters, numeric metrics and every output file (never fatal).

    With the checkpoint's ``run_folder`` (and ``evaluate.link_training_run``), the run is created as a child of
    the MLflow run that trained it, and the metrics are logged back onto that run as ``test/<metric>``
    (``test_beam/<metric>``, ``test_sample/<metric>`` for another decoding; see :mod:`empdg.evaluation.run_link`).
    """
    logger_cfg = OmegaConf.to_container(cfg.logger, resolve=True)
    tags = {**tags, "empdg.role": "evaluation"}
    link = None
    if run_folder is not None and logger_cfg.get("name") == "mlflow" and cfg.evaluate.get("link_training_run", True):
        configure_http(logger_cfg)  # logger.http_*: a failing server of ours is given up on soon
        # only this command's store (and local stores inside the run folder): never one the run folder names
        link = find_training_run(run_folder, str(logger_cfg.get("tracking_uri") or ""), run_config)
        if link is None:
            log.info("no MLflow training run found for %s: the evaluation run stands alone", run_folder)
        else:
            logger_cfg, tags = linked_logger_config(logger_cfg, tags, link)
    logger = build_logger(logger_cfg, out, tags)
    if logger is None:
        return None
    params = {
        "ckpt_path": cfg.ckpt_path,
        "predictions_file": cfg.predictions_file,
        **{f"evaluate.{k}": v for k, v in OmegaConf.to_container(cfg.evaluate, resolve=True).items()},
        **{f"decoding.{k}": v for k, v in OmegaConf.to_container(cfg.decoding, resolve=True).items()},
    }
    logger.log_hyperparams(params)
    logger.log_metrics({k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))})
    for path in files:
        log_artifact(logger, path, "evaluation")
    logger.finalize("success")
    where = describe_run(logger, out)
    if link is not None:
        try:
            logged = log_test_metrics(
                link, metrics, tags.get("subset", "all"), getattr(logger, "run_id", None),
                tags.get("decoding", "greedy"),
            )  # fmt: skip
            where += (
                f"\nlinked to training run {link.run_id} (experiment '{link.experiment_name}'): "
                f"{len(logged)} test metrics logged onto it"
            )
        except Exception as error:  # tracking is never fatal
            log.warning("could not log the test metrics onto training run %s: %s", link.run_id, error)
    return where


def checkpoint_settings_problems(cfg: DictConfig) -> list[str]:
    """What evaluating a checkpoint reads besides decoding (checked where it is built), each impossible one named."""
    settings = cfg.evaluate
    found = []
    if settings.subset not in SUBSETS:
        found.append(f"evaluate.subset={settings.subset!r} must be one of {SUBSETS}")
    if settings.split not in SPLITS:
        found.append(f"evaluate.split={settings.split!r}: choose one of {', '.join(SPLITS)}")
    size, note = settings.get("batch_size"), ", or null (data.eval_batch_size)"
    found += whole_problems("evaluate.batch_size", size, 1, note, allow_null=True)
    for key in ("data_from_run", "link_training_run"):
        if not isinstance(settings.get(key, True), bool):  # "no" would be taken as true
            found.append(f"evaluate.{key}={settings.get(key)!r}: give true or false")
    return found + seed_problems(cfg.get("seed"))


def max_file_bytes(cfg: DictConfig) -> int:
    """``evaluate.max_file_mb`` in bytes (configs written before the setting get its default)."""
    value = cfg.evaluate.get("max_file_mb", DEFAULT_MAX_BYTES / MB)
    if not is_number(value) or not value > 0:
        raise ConfigError(f"evaluate.max_file_mb={value!r} must be a number of megabytes > 0")
    return mb_to_bytes(value)


def read_prediction_file(source: str, system: str | None, max_bytes: int | None = DEFAULT_MAX_BYTES) -> PredictionFile:
    """The file's records of system ``system`` (``evaluate.system``); every problem is a user error."""
    with user_errors_from():  # a missing or malformed file: `error: <file:line: problem>`
        try:
            return load_predictions(source, None if system is None else str(system), max_bytes)
        except SystemChoiceError as error:
            fix = "pass evaluate.system=NAME, one of them" if error.choices else "leave evaluate.system null"
            raise ConfigError(f"evaluate.system: {error}; {fix}") from error


def add_meaning(cfg: DictConfig, result: EvaluationResult, data_cfg: dict[str, Any] | None) -> None:
    """The metrics that read meaning (``evaluate.meaning``) into ``result``: per-example fields and their means.

    A prediction file's reply-emotion classifier learns from ``data=...`` only when the command line names the
    data (the default built-in corpus would say nothing about ED replies); similarities need no data.
    """
    mode = meaning_mode(cfg.evaluate.get("meaning", "auto"))
    if data_cfg is None and data_overrides_on_command_line()[0] is not None:
        data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    with user_errors_from():  # a prediction file scored with evaluate.device=cuda on a machine without one
        device = inference_device(cfg.evaluate.get("device", "auto"))
    rows, metrics = score_meaning(result.records, data_cfg, mode, str(device))
    if rows:
        scores = result.example_scores or [{} for _ in rows]
        result.example_scores = [{**score, **row} for score, row in zip(scores, rows)]
        result.metrics.update(metrics)


def run_evaluation(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate ``ckpt_path`` or score ``predictions_file``; print the table and return the metrics (+ subset)."""
    if bool(cfg.ckpt_path) == bool(cfg.predictions_file):
        raise ConfigError("give exactly one of ckpt_path=PATH (evaluate a model) or predictions_file=PATH (a file)")
    subset = str(cfg.evaluate.subset)
    if cfg.ckpt_path:  # before any data is read
        problems = checkpoint_settings_problems(cfg)
        if problems:
            raise ConfigError("; ".join(problems))
    extra: dict[str, str] = {}
    if cfg.predictions_file:
        source = str(Path(cfg.predictions_file).expanduser().resolve())
        predictions = read_prediction_file(source, cfg.evaluate.get("system"), max_file_bytes(cfg))
        result = score_records(predictions.records)
        name, subset = predictions.system or Path(source).stem.removeprefix("pred_"), "file"
        extra = {"system": name, "format": predictions.format}
        tags = {"mode": "predictions_file", "predictions_file": source, "subset": subset, **extra}
    else:
        with user_errors_from():  # a missing, unsafe or foreign checkpoint, bad decoding settings
            loaded = load_checkpoint(cfg.ckpt_path, with_critics=False)
            decoding = DecodingConfig.from_mapping(OmegaConf.to_container(cfg.decoding, resolve=True))
            loaded.bundle.to(inference_device(cfg.evaluate.get("device", "auto")))
        data_cfg, data_source = choose_data_config(cfg, loaded)
        log.info("data config from %s: %s", data_source, data_cfg.get("name"))
        raw, encoded = load_split(data_cfg, loaded.bundle.vocab, str(cfg.evaluate.split), int(cfg.seed))
        pairs = select_examples(raw, encoded, subset)
        batch_size = int(cfg.evaluate.batch_size or data_cfg.get("eval_batch_size", 32))
        result = evaluate_model(loaded.bundle, pairs, decoding, batch_size)
        source = str(loaded.path)
        name = str(loaded.hyper_parameters.get("model", {}).get("name", "model"))
        tags = {
            "mode": "checkpoint",
            "ckpt_path": source,
            "subset": subset,
            "dataset": str(data_cfg.get("name")),
            "decoding": decoding.strategy,
            "model": name,
        }
    add_meaning(cfg, result, None if cfg.predictions_file else data_cfg)
    title = f"{name} | subset={subset} | n={result.metrics['n_examples']}"
    out = output_folder(cfg)  # created only now: a failed evaluation leaves no empty folder behind
    files = write_outputs(result, out, name, title, subset, source)
    # a checkpoint's run folder (<run>/checkpoints/x.ckpt): the evaluation is linked to its training run
    training = (loaded.path.parent.parent, loaded.run_config) if not cfg.predictions_file else (None, None)
    where = log_to_mlflow(cfg, out, tags, result.metrics, files, *training)
    print(metrics_markdown(result.metrics, title, subset, source))
    print(f"outputs: {out}")
    if where:
        print(where)
    return {**result.metrics, "subset": subset, **extra}
