"""The evaluation entry point, end to end: scoring a release file and evaluating a tiny checkpoint."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from empdg.evaluation.release_format import read_predictions

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8"}


def run(args: list[str], cwd: Path, timeout: int = 240) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def evaluate(args: list[str], cwd: Path) -> tuple[dict, Path]:
    """One evaluation; the MiniLM metrics only where a test asks (``evaluate.meaning=auto``): they cost seconds."""
    if not any(arg.startswith("evaluate.meaning=") for arg in args):
        args = [*args, "evaluate.meaning=false"]
    result = run([sys.executable, "-m", "empdg.evaluate", f"paths.root_dir={cwd}", *args], cwd=cwd)
    out_line = next(line for line in result.stdout.splitlines() if line.startswith("outputs: "))
    return last_json(result.stdout), Path(out_line.removeprefix("outputs: "))


def test_scores_release_file_like_the_paper(release_outputs_dir: Path, tmp_path: Path) -> None:
    metrics, out = evaluate([f"predictions_file={release_outputs_dir / 'pred_EmpDG.txt'}", "logger=none"], tmp_path)
    assert round(metrics["dist_1"], 2) == 1.81
    assert round(metrics["dist_2"], 2) == 6.94
    assert {"bleu_1", "bleu_2", "bleu_3", "bleu_4", "avg_len", "rep_3"} <= metrics.keys()
    assert "ppl" not in metrics
    assert metrics["n_examples"] == 2713
    assert (out / "metrics.md").read_text().count("2713") >= 1


def test_evaluates_checkpoint_and_logs_to_mlflow(tiny_checkpoint: Path, tmp_path: Path) -> None:
    metrics, out = evaluate(
        [f"ckpt_path={tiny_checkpoint}", "evaluate.subset=all", "decoding=beam", "evaluate.meaning=auto"], tmp_path
    )
    assert math.isfinite(metrics["ppl"]) and 0.0 <= metrics["emotion_acc"] <= 1.0
    # the metrics that read meaning: means of the per-example fields in predictions.jsonl
    lines = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    for key in ("sim_reference", "sim_context"):
        assert -1.0 <= metrics[key] <= 1.0
        assert metrics[key] == pytest.approx(sum(line[key] for line in lines) / len(lines), abs=1e-5)
    gold = [line["emotion"] for line in lines]
    assert metrics["reply_emotion_acc"] == pytest.approx(
        sum(line["reply_emotion"] == g for line, g in zip(lines, gold)) / len(lines)
    )
    assert metrics["reply_emotion_acc_gold"] == pytest.approx(
        sum(line["reference_emotion"] == g for line, g in zip(lines, gold)) / len(lines)
    )
    assert list((tmp_path / ".cache" / "empdg").glob("reply-emotion-*.json"))  # the classifier, cached as JSON
    for key in ("dist_1", "dist_2", "bleu_1", "bleu_4", "avg_len", "rep_3", "emotion_macro_f1"):
        assert key in metrics
    jsonl = read_predictions(out / "predictions.jsonl")
    release = read_predictions(out / "pred_empdg.txt")
    assert len(jsonl) == metrics["n_examples"] > 0
    assert [r.pred for r in release] == [r.pred for r in jsonl]
    for name in ("emotion_confusion.png", "length_histogram.png", "metrics.md"):
        assert (out / name).stat().st_size > 0
    assert "subset: **all**" in (out / "metrics.md").read_text()

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    (experiment,) = client.search_experiments(filter_string="name = 'empdg-evaluation'")
    (mlflow_run,) = client.search_runs([experiment.experiment_id])
    assert mlflow_run.data.tags["subset"] == "all"
    assert mlflow_run.data.tags["ckpt_path"] == str(tiny_checkpoint.resolve())
    assert mlflow_run.data.metrics["ppl"] == pytest.approx(metrics["ppl"])
    assert mlflow_run.data.metrics["sim_reference"] == pytest.approx(metrics["sim_reference"])
    artifacts = {Path(a.path).name for a in client.list_artifacts(mlflow_run.info.run_id, "evaluation")}
    assert {"predictions.jsonl", "emotion_confusion.png", "metrics.md"} <= artifacts


def test_feedback_subset_is_smaller(tiny_checkpoint: Path, tmp_path: Path) -> None:
    every, _ = evaluate([f"ckpt_path={tiny_checkpoint}", "logger=none", "decoding.max_len=3"], tmp_path)
    feedback, out = evaluate(
        [f"ckpt_path={tiny_checkpoint}", "logger=none", "evaluate.subset=feedback", "decoding=sample"], tmp_path
    )
    assert 0 < feedback["n_examples"] < every["n_examples"]
    assert feedback["subset"] == "feedback"
    assert all(record.feedback for record in read_predictions(out / "predictions.jsonl"))
    assert "subset: **feedback**" in (out / "metrics.md").read_text()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("evaluate.split=dev", "evaluate.split='dev': choose one of train, valid, test"),
        ("evaluate.subset=most", "evaluate.subset='most' must be one of ('all', 'feedback')"),
        ("evaluate.batch_size=0", "evaluate.batch_size=0 must be a whole number >= 1, or null"),
        ("evaluate.batch_size=abc", "evaluate.batch_size='abc' must be a whole number >= 1"),
        ("evaluate.data_from_run=no", "evaluate.data_from_run='no': give true or false"),
        ("evaluate.link_training_run=1", "evaluate.link_training_run=1: give true or false"),
        ("seed=-3", "seed=-3 must be a whole number from 0 to 4294967295"),
    ],
)
def test_impossible_evaluation_settings_are_named_before_the_checkpoint_is_read(
    tmp_path: Path, override: str, message: str
) -> None:
    import re

    from empdg.config import compose
    from empdg.errors import ConfigError
    from empdg.evaluation.pipeline import run_evaluation

    missing = tmp_path / "never.ckpt"  # read only after the settings pass: its absence would be the error
    cfg = compose("evaluate", [f"ckpt_path={missing}", override, f"paths.root_dir={tmp_path}", "logger=none"])
    with pytest.raises(ConfigError, match=re.escape(message)):
        run_evaluation(cfg)
