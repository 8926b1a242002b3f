"""Evaluation entry point: ``python -m empdg.evaluate ckpt_path=PATH`` or ``predictions_file=PATH``.

Writes predictions (JSONL and the EmpDG release text format), a markdown metrics table and plots
into the run folder, logs all of it to a new MLflow run tagged with the checkpoint and subset, and
prints the metrics as one JSON object on the last stdout line (for scripts and tests).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from empdg.data.conversation import EMOTIONS
from empdg.evaluation.checkpoint import LoadedCheckpoint, load_checkpoint
from empdg.evaluation.decoding import DecodingConfig
from empdg.evaluation.release_format import read_predictions, write_jsonl, write_release_file
from empdg.evaluation.reports import metrics_markdown, plot_confusion_matrix, plot_length_histogram
from empdg.evaluation.runner import (
    EvaluationResult,
    evaluate_model,
    load_split,
    resolve_run_paths,
    score_records,
    select_examples,
)

CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")
log = logging.getLogger(__name__)


def data_overridden_on_command_line() -> bool:
    """True when the user chose data (``data=...``, ``data.x=...``) rather than taking the default."""
    try:
        overrides = HydraConfig.get().overrides.task
    except ValueError:  # not inside a Hydra run
        return False
    return any(item.lstrip("+~").split("=")[0].split(".")[0] == "data" for item in overrides)


def choose_data_config(cfg: DictConfig, loaded: LoadedCheckpoint) -> tuple[dict[str, Any], str]:
    """Command-line data wins; else the checkpoint run's saved data config; else the default group."""
    if cfg.evaluate.data_from_run and not data_overridden_on_command_line() and loaded.run_config:
        data = loaded.run_config.get("data")
        if data:
            return resolve_run_paths(dict(data), loaded.path.parent.parent), "checkpoint run config"
    return OmegaConf.to_container(cfg.data, resolve=True), "command line / default"


def output_folder(cfg: DictConfig) -> Path:
    path = Path(str(cfg.paths.output_dir)).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_outputs(result: EvaluationResult, out: Path, name: str, title: str, subset: str, source: str) -> list[Path]:
    """Predictions, tables and figures of one evaluation; returns the files written."""
    files = []
    if result.records:
        write_jsonl(out / "predictions.jsonl", result.records)
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


def log_to_mlflow(cfg: DictConfig, out: Path, tags: dict[str, str], metrics: dict, files: list[Path]) -> str | None:
    """A new tracking run holding parameters, numeric metrics and every output file (never fatal)."""
    from empdg.tracking.mlflow_tracking import build_logger, describe_run, log_artifact

    logger = build_logger(OmegaConf.to_container(cfg.logger, resolve=True), out, tags)
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
    return describe_run(logger, out)


def run(cfg: DictConfig) -> dict[str, Any]:
    if bool(cfg.ckpt_path) == bool(cfg.predictions_file):
        raise ValueError("give exactly one of ckpt_path=PATH (evaluate a model) or predictions_file=PATH (a file)")
    out = output_folder(cfg)
    subset = str(cfg.evaluate.subset)
    if cfg.predictions_file:
        source = str(Path(cfg.predictions_file).expanduser().resolve())
        result = score_records(read_predictions(source))
        name, subset = Path(source).stem.removeprefix("pred_"), "file"
        tags = {"mode": "predictions_file", "predictions_file": source, "subset": subset}
    else:
        loaded = load_checkpoint(cfg.ckpt_path)
        data_cfg, data_source = choose_data_config(cfg, loaded)
        log.info("data config from %s: %s", data_source, data_cfg.get("name"))
        raw, encoded = load_split(data_cfg, loaded.module.vocab, str(cfg.evaluate.split), int(cfg.seed))
        pairs = select_examples(raw, encoded, subset)
        decoding = DecodingConfig.from_mapping(OmegaConf.to_container(cfg.decoding, resolve=True))
        batch_size = int(cfg.evaluate.batch_size or data_cfg.get("eval_batch_size", 32))
        result = evaluate_model(loaded.module, pairs, decoding, batch_size)
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
    title = f"{name} | subset={subset} | n={result.metrics['n_examples']}"
    files = write_outputs(result, out, name, title, subset, source)
    where = log_to_mlflow(cfg, out, tags, result.metrics, files)
    print(metrics_markdown(result.metrics, title, subset, source))
    print(f"outputs: {out}")
    if where:
        print(where)
    return {**result.metrics, "subset": subset}


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="evaluate")
def main(cfg: DictConfig) -> None:
    metrics = run(cfg)
    print(json.dumps(metrics), flush=True)


if __name__ == "__main__":
    main()
