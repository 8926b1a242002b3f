"""empdg-compare (empdg.evaluation.comparison) on MLflow runs created here with known metrics and tags."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from empdg.evaluation.comparison import run_compare

# ablation -> (val/ppl, val/emotion_acc) of each seed
RUNS = {
    "none": [(30.0, 0.30), (32.0, 0.40), (34.0, 0.50)],
    "no_critics": [(40.0, 0.20), (42.0, 0.30)],
    "woG": [(50.0, 0.10)],
}


@pytest.fixture()
def store(tmp_path: Path) -> str:
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    (tmp_path / "mlruns").mkdir()
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("ablations", artifact_location=(tmp_path / "art").as_uri())
    for ablation, values in RUNS.items():
        for seed, (ppl, acc) in enumerate(values):
            run = client.create_run(experiment, run_name=f"empdg-{ablation}", tags={"ablation": ablation})
            client.log_param(run.info.run_id, "seed", seed)
            client.log_metric(run.info.run_id, "val/ppl", ppl)
            client.log_metric(run.info.run_id, "val/emotion_acc", acc)
            client.set_terminated(run.info.run_id)
    skipped = [
        ("FAILED", {"ablation": "none"}),  # crashed run
        ("FINISHED", {"ablation": "none", "sweep.role": "parent"}),  # a sweep's parent run
    ]
    for status, tags in skipped:
        run = client.create_run(experiment, run_name="skip", tags=tags)
        client.log_metric(run.info.run_id, "val/ppl", 1000.0)
        client.set_terminated(run.info.run_id, status)
    return uri


def config(uri: str, **kwargs) -> OmegaConf:
    base = {
        "experiment_name": "ablations",
        "tracking_uri": uri,
        "group_by": "ablation",
        "metrics": ["val/ppl", "val/emotion_acc"],
        "filter": "",
        "statuses": ["FINISHED"],
        "order": ["none", "no_critics", "woG"],
        "log_run": True,
    }
    return OmegaConf.create({**base, **kwargs})


def test_grouped_table_has_mean_and_std(store: str, tmp_path: Path) -> None:
    rows = run_compare(config(store), tmp_path / "out")
    assert [r.label for r in rows] == ["none", "no_critics", "woG"]
    none, no_critics, wog = rows
    assert none.mean_std("val/ppl") == pytest.approx((32.0, 2.0))
    assert none.mean_std("val/emotion_acc") == pytest.approx((0.4, 0.1))
    assert no_critics.mean_std("val/ppl") == pytest.approx((41.0, 2**0.5))
    table = (tmp_path / "out" / "comparison.md").read_text()
    assert "| none | 3 | 32.0000 ± 2.0000 | 0.4000 ± 0.1000 |" in table
    assert "| no_critics | 2 | 41.0000 ± 1.4142 | 0.2500 ± 0.0707 |" in table
    assert "| woG | 1 | 50.0000 | 0.1000 |" in table  # one seed: no spread shown
    assert (tmp_path / "out" / "comparison.png").stat().st_size > 0
    client = MlflowClient(tracking_uri=store)
    (comparison,) = client.search_runs(
        [client.get_experiment_by_name("ablations").experiment_id], "tags.`empdg.role` = 'comparison'"
    )
    names = {a.path for a in client.list_artifacts(comparison.info.run_id, "comparison")}
    assert names == {"comparison/comparison.md", "comparison/comparison.csv", "comparison/comparison.png"}

    # the comparison run itself is never a row of a later comparison; one row per run without group_by
    rows = run_compare(config(store, group_by=None, log_run=False), tmp_path / "out2")
    assert len(rows) == 6 and all(len(r.run_ids) == 1 for r in rows)


def test_group_by_param_and_cli(store: str, tmp_path: Path) -> None:
    rows = run_compare(config(store, group_by="params.seed", order=[], log_run=False), tmp_path / "out")
    assert [r.label for r in rows] == ["0", "1", "2"]
    assert rows[2].mean_std("val/ppl") == pytest.approx((34.0, 0.0))

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "empdg.compare",
        "experiment=ablations",
        "group_by=ablation",
        f"paths.root_dir={tmp_path}",
        "metrics=[val/ppl]",
        "log_run=false",
    ]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| none | 3 | 32.0000 ± 2.0000 |" in done.stdout
    assert list((tmp_path / "comparisons" / "ablations").glob("*/comparison.md"))
    # `experiment` is the preset group of train.py in the same config folder; here it is compare's own key,
    # and train.py's name for it works too. Nothing is written outside the comparison's folder.
    command[3] = "experiment_name=ablations"
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(list((tmp_path / "comparisons" / "ablations").glob("*/comparison.md"))) >= 1
    assert not (tmp_path / ".hydra").exists() and not list(tmp_path.glob("*.log"))


def _predictions(tmp_path: Path, name: str, replies: list[str]) -> Path:
    """A predictions.jsonl as empdg.evaluate writes it: records plus per-example NLL and feedback flag."""
    from empdg.evaluation.release_format import PredictionRecord
    from empdg.evaluation.scored_examples import write_scored_jsonl

    folder = tmp_path / name
    folder.mkdir()
    records = [
        PredictionRecord("joyful" if i % 2 else "sad", [f"context {i}"], reply, f"gold reply {i} .", example_id=f"t{i}")
        for i, reply in enumerate(replies)
    ]
    scores = [{"has_feedback": i % 2 == 0, "nll_sum": 2.0 + i % 3, "n_tokens": 4} for i in range(len(replies))]
    write_scored_jsonl(folder / "predictions.jsonl", records, scores)
    return folder / "predictions.jsonl"


def test_test_metrics_with_bootstrap_and_baseline(tmp_path: Path) -> None:
    """Training runs with test/ metrics logged back and child evaluation runs holding predictions.jsonl."""
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    (tmp_path / "mlruns").mkdir()
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("critics", artifact_location=(tmp_path / "art").as_uri())
    n = 60
    systems = {  # run name -> replies: "empdg" varies its replies and is positive; "woD" repeats one reply
        "empdg": [f"that is great , number {i} !" if i % 2 else f"oh no , sorry about {i} ." for i in range(n)],
        "woD": ["i see ."] * n,
    }
    ids = {}
    for name, replies in systems.items():
        train = client.create_run(experiment, run_name=name, tags={"ablation": name})
        client.log_metric(train.info.run_id, "val/ppl", 30.0)
        client.log_metric(train.info.run_id, "test/dist_2", 50.0 if name == "empdg" else 1.0)
        evaluation = client.create_run(
            experiment,
            run_name="eval-all",
            tags={"mlflow.parentRunId": train.info.run_id, "empdg.train_run_id": train.info.run_id,
                  "empdg.role": "evaluation", "subset": "all"},
        )  # fmt: skip
        client.log_artifact(evaluation.info.run_id, str(_predictions(tmp_path, name, replies)), "evaluation")
        client.set_terminated(evaluation.info.run_id)
        client.set_tag(train.info.run_id, "empdg.eval_run.all", evaluation.info.run_id)
        client.set_terminated(train.info.run_id)
        ids[name] = train.info.run_id
    stats = {"subset": "all", "test_metrics": ["dist_2", "valence_agreement"], "baseline": "woD",
             "bootstrap": {"n": 300, "seed": 0, "confidence": 0.95,
                           "metrics": ["ppl", "dist_2", "valence_agreement", "unique_replies"]}}  # fmt: skip
    cfg = config(uri, experiment_name="critics", group_by=None, order=[], log_run=True, compare=stats)
    rows = run_compare(cfg, tmp_path / "out")
    assert len(rows) == 2  # the evaluation runs are not rows of their own
    table = (tmp_path / "out" / "comparison.md").read_text()
    # the logged-back test metric is a column (valence_agreement was logged by no run: no column)
    assert "| run | n | val/ppl | val/emotion_acc | test/dist_2 |" in table
    assert f"| empdg ({ids['empdg'][:8]}) | 1 | 30.0000 | – | 50.0000 |" in table
    # the bootstrap table, from the predictions artifacts
    empdg, wod = f"empdg ({ids['empdg'][:8]})", f"woD ({ids['woD'][:8]})"
    assert "## Test set, 95% bootstrap intervals" in table
    assert f"| {wod} | {n} | 2.117 [" in table  # ppl = exp(total NLL / tokens) = exp((2 + 3 + 4) / (3 * 4))
    assert f"Δ unique_replies vs {wod}" in table
    assert "| 1 [1, 1] | (baseline) |" in table  # woD: one unique reply, a degenerate interval

    from empdg.evaluation.bootstrap import compare_prediction_files

    direct = compare_prediction_files(
        {empdg: tmp_path / "empdg" / "predictions.jsonl", wod: tmp_path / "woD" / "predictions.jsonl"},
        baseline=wod, n_resamples=300, seed=0, metrics=["ppl", "dist_2", "valence_agreement", "unique_replies"],
    )  # fmt: skip
    assert direct.markdown() in table  # the CLI is the library function on the downloaded artifacts
    diff = direct.systems[empdg].differences["unique_replies"]
    assert diff.delta == n - 1 and diff.p_value == pytest.approx(1 / 301)
    assert direct.systems[empdg].differences["ppl"].delta == 0.0  # same NLL per example: Δ = 0, p = 1
    assert direct.systems[empdg].differences["ppl"].p_value == 1.0
    for suffix in ("md", "csv", "json"):
        assert (tmp_path / "out" / f"comparison_test.{suffix}").stat().st_size > 0
    (comparison,) = client.search_runs([experiment], "tags.`empdg.role` = 'comparison'")
    names = {a.path for a in client.list_artifacts(comparison.info.run_id, "comparison")}
    assert "comparison/comparison_test.csv" in names

    # the feedback subset uses the same predictions, filtered by their per-example flag
    feedback = {**stats, "subset": "feedback", "baseline": ids["woD"][:8]}
    run_compare(config(uri, experiment_name="critics", group_by=None, order=[], log_run=False, compare=feedback),
                tmp_path / "out_feedback")  # fmt: skip
    text = (tmp_path / "out_feedback" / "comparison_test.md").read_text()
    assert f"| {wod} | {n // 2} |" in text and "subset **feedback**" in text

    with pytest.raises(ValueError, match="matches no run"):
        run_compare(config(uri, experiment_name="critics", compare={**stats, "baseline": "nope"}, log_run=False),
                    tmp_path / "out_bad")  # fmt: skip


def test_the_command_config_leaves_the_config_store_as_it_was() -> None:
    from hydra.core.config_store import ConfigStore

    from empdg.commands.compare import stored_config
    from empdg.config import compose

    before = repr(ConfigStore.instance().repo)
    with stored_config():
        assert "compare.yaml" in ConfigStore.instance().repo and "paths" in ConfigStore.instance().repo
    assert repr(ConfigStore.instance().repo) == before
    # so composing from the folder afterwards is not matched against store entries of the same name
    assert compose("compare", ["experiment_name=x"]).experiment_name == "x"
