"""Evaluation linked to its training run in MLflow, per-example scores, and the bootstrap comparison of runs."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from empdg.evaluation.bootstrap import ExampleStatistics
from empdg.evaluation.run_link import (
    RUN_RECORD_FILE,
    candidate_stores,
    find_training_run,
    subset_metric_prefix,
    write_run_record,
)
from empdg.evaluation.scored_examples import read_scored_examples

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8"}


def evaluate(args: list[str], cwd: Path) -> tuple[dict, Path, str]:
    command = [sys.executable, "-m", "empdg.evaluate", f"paths.root_dir={cwd}", "evaluate.meaning=false", *args]
    done = subprocess.run(command, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out_line = next(line for line in done.stdout.splitlines() if line.startswith("outputs: "))
    return json.loads(done.stdout.strip().splitlines()[-1]), Path(out_line.removeprefix("outputs: ")), done.stdout


def copy_run(checkpoint: Path, target: Path) -> Path:
    """A copy of the tiny training run's folder (config.yaml, vocab.json, checkpoints/)."""
    shutil.copytree(checkpoint.parent.parent, target)
    return target / "checkpoints" / checkpoint.name


def test_subset_metric_prefixes() -> None:
    assert subset_metric_prefix("all") == "test"
    assert subset_metric_prefix("feedback") == "test_feedback"
    assert subset_metric_prefix("all", "beam") == "test_beam"
    assert subset_metric_prefix("feedback", "sample") == "test_feedback_sample"


def test_run_record_and_store_search(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/store/mlflow.db"
    (tmp_path / "store").mkdir()
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("exp", artifact_location=(tmp_path / "art").as_uri())
    recorded = client.create_run(experiment, run_name="recorded").info.run_id
    tagged = client.create_run(experiment, run_name="tagged").info.run_id
    by_param = client.create_run(experiment, run_name="by-param").info.run_id
    folders = {name: tmp_path / "outputs" / "exp" / name for name in ("recorded", "tagged", "by_param", "unknown")}
    for folder in folders.values():
        folder.mkdir(parents=True)
    client.set_tag(tagged, "empdg.run_folder", str(folders["tagged"]))
    client.log_param(by_param, "paths.output_dir", str(folders["by_param"]))
    # an evaluation run of the same folder is never taken for its training run
    client.create_run(experiment, tags={"empdg.run_folder": str(folders["tagged"]), "empdg.role": "evaluation"})
    # the record may name a store the evaluation does not use (relative to the run's root, like training wrote it)
    write_run_record(folders["recorded"], recorded, "sqlite:///store/mlflow.db", experiment)
    assert json.loads((folders["recorded"] / RUN_RECORD_FILE).read_text())["run_id"] == recorded

    found = find_training_run(folders["recorded"], eval_uri=uri)  # the record gives the run id, never the store
    assert found is not None and (found.run_id, found.experiment_name, found.run_name) == (recorded, "exp", "recorded")
    assert found.tracking_uri == uri
    assert find_training_run(folders["tagged"], eval_uri=uri).run_id == tagged
    assert find_training_run(folders["by_param"], eval_uri=uri).run_id == by_param
    assert find_training_run(folders["unknown"], eval_uri=uri) is None
    # a store named by the stored config or the record (outside the run folder) is never searched
    config = {"logger": {"tracking_uri": "sqlite:///store/mlflow.db"}}
    assert find_training_run(folders["tagged"], eval_uri=None, run_config=config) is None
    assert find_training_run(folders["recorded"], eval_uri=None) is None
    # looking never creates a store
    missing = f"sqlite:///{tmp_path}/nowhere/mlflow.db"
    assert candidate_stores(folders["unknown"], missing) == []
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.slow
def test_linked_evaluation_and_bootstrap_comparison(tiny_checkpoint: Path, tmp_path: Path) -> None:
    # two "training runs" of the same checkpoint, logged the two ways a store can know its run folder
    ckpt_a = copy_run(tiny_checkpoint, tmp_path / "outputs" / "critics" / "run_a")
    ckpt_b = copy_run(tiny_checkpoint, tmp_path / "outputs" / "critics" / "run_b")
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    (tmp_path / "mlruns").mkdir()
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("critics", artifact_location=(tmp_path / "mlruns" / "artifacts").as_uri())
    run_a = client.create_run(experiment, run_name="empdg", tags={"empdg.run_folder": str(ckpt_a.parent.parent)})
    run_b = client.create_run(experiment, run_name="woD")
    client.log_param(run_b.info.run_id, "paths.output_dir", str(ckpt_b.parent.parent))
    for run in (run_a, run_b):
        client.log_metric(run.info.run_id, "val/ppl", 100.0)
        client.set_terminated(run.info.run_id)

    metrics, out, stdout = evaluate([f"ckpt_path={ckpt_a}"], tmp_path)
    assert f"linked to training run {run_a.info.run_id}" in stdout
    feedback, _, _ = evaluate([f"ckpt_path={ckpt_a}", "evaluate.subset=feedback"], tmp_path)
    evaluate([f"ckpt_path={ckpt_b}"], tmp_path)
    beam, _, _ = evaluate([f"ckpt_path={ckpt_a}", "decoding=beam", "decoding.beam_size=2"], tmp_path)

    # the evaluation runs are children of their training runs, in the training experiment
    children = client.search_runs([experiment], f"tags.`empdg.train_run_id` = '{run_a.info.run_id}'")
    assert sorted(c.data.tags["subset"] for c in children) == ["all", "all", "feedback"]
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == run_a.info.run_id
        assert child.data.tags["empdg.role"] == "evaluation"
    assert client.get_experiment_by_name("empdg-evaluation") is None  # nothing unlinked
    # the test metrics are logged back onto the training run, the subset in the name when not "all"
    trained = client.get_run(run_a.info.run_id)
    for key in ("ppl", "dist_1", "dist_2", "bleu_4", "valence_agreement", "unique_replies", "n_examples"):
        assert trained.data.metrics[f"test/{key}"] == pytest.approx(metrics[key]), key
        assert trained.data.metrics[f"test_feedback/{key}"] == pytest.approx(feedback[key]), key
        # another decoding has its own names: the greedy figures above were not overwritten by it
        assert trained.data.metrics[f"test_beam/{key}"] == pytest.approx(beam[key]), key
    (all_run,) = [c for c in children if c.data.tags["subset"] == "all" and c.data.tags["decoding"] == "greedy"]
    assert trained.data.tags["empdg.eval_run.all"] == all_run.info.run_id
    (beam_run,) = [c for c in children if c.data.tags["decoding"] == "beam"]
    assert trained.data.tags["empdg.eval_run.all.beam"] == beam_run.info.run_id

    # every prediction carries what a bootstrap needs; the metrics are recomputed from it exactly
    examples = read_scored_examples(out / "predictions.jsonl")
    assert len(examples) == metrics["n_examples"] > 0
    assert all(e.nll_sum is not None and e.n_tokens and e.has_feedback is not None for e in examples)
    assert all(e.predicted_emotion and e.example_id for e in examples)
    assert sum(e.has_feedback for e in examples) == feedback["n_examples"]
    total = sum(e.nll_sum for e in examples) / sum(e.n_tokens for e in examples)
    assert math.exp(total) == pytest.approx(metrics["ppl"], rel=1e-5)
    point = ExampleStatistics(examples).point()
    # exactly: the evaluation aggregates the statistics it wrote with the same functions
    assert set(point) == {"ppl", "emotion_acc", "dist_1", "dist_2", "bleu_1", "bleu_2", "bleu_3", "bleu_4", "avg_len",
                          "rep_3", "unique_replies", "unique_reply_share", "valence_agreement",
                          "valence_neutral_share"}  # fmt: skip
    assert point == {key: metrics[key] for key in point}

    # the comparison reads the test metrics and the predictions artifacts; the same checkpoint twice: Δ = 0, p = 1
    from empdg.evaluation.comparison import run_compare

    cfg = OmegaConf.create({
        "experiment_name": "critics", "tracking_uri": uri, "group_by": None, "metrics": ["val/ppl"], "filter": "",
        "statuses": ["FINISHED"], "order": [], "log_run": False,
        "compare": {"subset": "all", "test_metrics": ["ppl", "dist_2"], "baseline": "woD",
                    "bootstrap": {"n": 200, "seed": 0, "confidence": 0.95,
                                  "metrics": ["ppl", "dist_1", "dist_2", "bleu_4", "valence_agreement",
                                              "unique_replies"]}},
    })  # fmt: skip
    rows = run_compare(cfg, tmp_path / "comparison")
    assert len(rows) == 2
    table = (tmp_path / "comparison" / "comparison.md").read_text()
    assert "| run | n | val/ppl | test/ppl | test/dist_2 |" in table
    csv_rows = (tmp_path / "comparison" / "comparison_test.csv").read_text().splitlines()[1:]
    deltas = [line.split(",") for line in csv_rows if line.startswith("empdg")]
    assert len(deltas) == 6
    for cells in deltas:  # system, metric, value, low, high, delta, delta_low, delta_high, p_value
        assert float(cells[5]) == 0.0 and float(cells[8]) == 1.0, cells
