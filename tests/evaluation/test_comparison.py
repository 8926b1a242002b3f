"""empdg-compare (empdg.evaluation.comparison) on MLflow runs created here with known metrics and tags."""

from __future__ import annotations

import os
import re
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


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Shared by this module's tests (a store's creation takes seconds); only one of them logs a comparison run."""
    tmp_path = tmp_path_factory.mktemp("ablations")
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
        ("FINISHED", {"ablation": "none", "empdg.role": "human_evaluation"}),  # empdg-human-report's run
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
    assert names == {f"comparison/{name}" for name in
                     ("comparison.md", "comparison.csv", "comparison.png", "learning_curves.png")}  # fmt: skip

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
        f"tracking_uri={store}",  # the module's shared store (outputs still under paths.root_dir)
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


def _evaluated_store(tmp_path: Path) -> tuple[str, MlflowClient, str, dict[str, str], int]:
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
    return uri, client, experiment, ids, n


def test_test_metrics_with_bootstrap_and_baseline(tmp_path: Path) -> None:
    uri, client, experiment, ids, n = _evaluated_store(tmp_path)
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


# -- figures, counts, budgets and sweep trials ----------------------------------------------------------------------
@pytest.fixture()
def figures(monkeypatch: pytest.MonkeyPatch) -> dict:
    """The figures run_compare saves, by file name (still written), for their matplotlib objects."""
    from empdg.evaluation import comparison

    captured: dict = {}

    def keep(figure, path: Path) -> None:
        captured[path.name] = figure
        figure.savefig(path, dpi=20)

    monkeypatch.setattr(comparison, "save_figure", keep)
    yield captured
    import matplotlib.pyplot as plt

    for figure in captured.values():
        plt.close(figure)


def _panels(figure) -> dict:
    return {axis.get_title(): axis for axis in figure.axes}


def _segments(axis, gid: str) -> dict[float, tuple[float, float]]:
    """x -> (low, high) of the error bars of ``gid`` in a panel."""
    found = {}
    for collection in axis.collections:
        if collection.get_gid() == gid:
            for (x, low), (_, high) in collection.get_segments():
                found[round(float(x), 6)] = (float(low), float(high))
    return found


def test_the_bar_chart_is_a_grid_of_at_most_three_columns() -> None:
    from empdg.evaluation.comparison import Row, comparison_figure, grid_shape

    assert [grid_shape(n) for n in (1, 2, 3, 4, 7, 9)] == [(1, 1), (1, 2), (1, 3), (2, 3), (3, 3), (3, 3)]
    metrics = [f"m{i}" for i in range(9)]
    rows = [Row(f"run-{i} (abcdef{i:02d})", [f"r{i}"], {m: [float(i + 1)] for m in metrics}) for i in range(3)]
    figure = comparison_figure(rows, metrics, "nine metrics")
    assert len(figure.axes) == 9
    assert {axis.get_subplotspec().get_geometry()[:2] for axis in figure.axes} == {(3, 3)}
    width, height = figure.get_size_inches() * 100  # saved at dpi=100
    assert width <= 1300 and height <= 1300, (width, height)  # one row of 9 was 4,500 x 450 px
    figure = comparison_figure(rows, metrics[:7], "seven")  # the last row's two empty cells are dropped
    assert len(figure.axes) == 7


def test_bar_chart_error_bars_are_the_groups_std_and_none_for_single_runs(store: str, tmp_path: Path, figures) -> None:
    run_compare(config(store, log_run=False), tmp_path / "out")
    panel = _panels(figures["comparison.png"])["val/ppl"]
    # none: 32 ± 2 over 3 seeds, no_critics: 41 ± √2, woG: one run, no bar (was a zero-width one)
    spans = _segments(panel, "std")
    assert sorted(spans) == [0.0, 1.0]
    assert spans[0.0] == pytest.approx((30.0, 34.0)) and spans[1.0] == pytest.approx((41 - 2**0.5, 41 + 2**0.5))
    assert [bar.get_height() for bar in panel.patches] == pytest.approx([32.0, 41.0, 50.0])


def test_the_bootstrap_intervals_drawn_are_the_csvs(tmp_path: Path, figures) -> None:
    import csv

    uri, _, _, ids, _ = _evaluated_store(tmp_path)
    boot = {"n": 200, "seed": 0, "confidence": 0.9, "metrics": ["ppl", "dist_2", "unique_replies"]}
    stats = {"subset": "all", "test_metrics": ["dist_2"], "baseline": None, "bootstrap": boot}
    run_compare(config(uri, experiment_name="critics", group_by=None, order=[], log_run=False, compare=stats),
                tmp_path / "out")  # fmt: skip
    with (tmp_path / "out" / "comparison_test.csv").open(encoding="utf-8") as handle:
        expected = list(csv.DictReader(handle))
    assert len(expected) == 6  # 2 runs x 3 metrics
    # a count is written as one: woD repeats one reply
    (wod_unique,) = [r for r in expected if r["system"].startswith("woD") and r["metric"] == "unique_replies"]
    assert (wod_unique["value"], wod_unique["low"], wod_unique["high"]) == ("1", "1", "1")
    panels = _panels(figures["comparison.png"])
    # test/ppl and test/unique_replies have no table column (not logged back) but their intervals are drawn
    assert set(panels) == {"val/ppl", "val/emotion_acc", "test/dist_2", "test/ppl", "test/unique_replies"}
    drawn = 0
    for record in expected:
        axis = panels[f"test/{record['metric']}"]
        x = [label.get_text() for label in axis.get_xticklabels()].index(record["system"])
        assert _segments(axis, "bootstrap")[float(x)] == pytest.approx((float(record["low"]), float(record["high"])))
        drawn += 1
    assert drawn == sum(len(_segments(axis, "bootstrap")) for axis in panels.values())
    assert "90% bootstrap interval" in " ".join(text.get_text() for text in figures["comparison.png"].texts)


def _training_run(client: MlflowClient, experiment: str, name: str, ablation: str, phases: tuple[int, int, int],
                  critics: bool, curve: list[tuple[int, float]], unique: float, **tags: str) -> str:  # fmt: skip
    """A run as train.py logs it: the flattened config as params, val/ppl at each validation."""
    from mlflow.entities import Metric, Param

    run = client.create_run(experiment, run_name=name, tags={"ablation": ablation, **tags})
    params = {f"training.phases.{key}": value for key, value in zip(("generator_pretrain", "critic_pretrain",
                                                                      "adversarial"), phases)}  # fmt: skip
    params |= {"adversarial.n_critic": 1, "adversarial.g_steps": 5, "adversarial.semantic_critic": critics,
               "adversarial.emotion_critic": False}  # fmt: skip
    metrics = [Metric("val/ppl", value, 1000 + i, step) for i, (step, value) in enumerate(curve)]
    metrics.append(Metric("test/unique_replies", unique, 1000, 0))
    client.log_batch(run.info.run_id, metrics=metrics, params=[Param(k, str(v)) for k, v in params.items()])
    client.set_terminated(run.info.run_id)
    return run.info.run_id


@pytest.fixture(scope="module")
def study_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, str]]:
    """Two full runs of one ablation, a run without critics (resumed: step 100 logged twice), a sweep trial.

    Shared by the tests that read it (``log_run=False``): a store's creation takes seconds."""
    tmp_path = tmp_path_factory.mktemp("study")
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    (tmp_path / "mlruns").mkdir()
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("study", artifact_location=(tmp_path / "art").as_uri())
    run = lambda *args, **tags: _training_run(client, experiment, *args, **tags)  # noqa: E731
    ids = {
        "full-a": run("full-a", "none", (300, 40, 25), True, [(0, 90.0), (100, 60.0), (200, 45.0)], 61),
        "full-b": run("full-b", "none", (300, 40, 25), True, [(0, 88.0), (100, 58.0), (200, 44.0)], 62),
        "mle": run("mle", "no_critics", (500, 40, 25), False, [(0, 80.0), (100, 70.0), (100, 65.0)], 40),
        "trial": run(
            "s-trial-0000", "none", (60, 0, 0), True, [(0, 95.0), (50, 80.0)], 7, sweep="s", **{"sweep.role": "trial"}
        ),  # fmt: skip
    }
    return uri, ids


def study_config(uri: str, **kwargs) -> OmegaConf:
    stats = {"test_metrics": ["unique_replies"], "bootstrap": {"n": 0}, **kwargs.pop("compare", {})}
    return config(uri, experiment_name="study", metrics=["val/ppl"], order=[], log_run=False, compare=stats, **kwargs)


def test_counts_are_integers_and_each_row_shows_its_update_budget(study_store, tmp_path: Path) -> None:
    uri, _ = study_store
    run_compare(study_config(uri), tmp_path / "out")
    table = (tmp_path / "out" / "comparison.md").read_text()
    # updates: 300 + 40 + 25 cycles x (1 + 5); without critics the critic phases do not run: 500
    assert "| ablation | n | updates | val/ppl | test/unique_replies |" in table
    assert "| none | 2 | 490 | 44.5000 ± 0.7071 | 61.5 ± 0.7 |" in table
    assert "| no_critics | 1 | 500 | 65.0000 | 40 |" in table  # 40, not 40.0000
    lines = (tmp_path / "out" / "comparison.csv").read_text().splitlines()
    assert lines[0] == "label,n,updates,val/ppl_mean,val/ppl_std,test/unique_replies_mean,test/unique_replies_std"
    assert lines[1] == "no_critics,1,500,65.0,0.0,40,0"

    # with the sweep trial: its short budget shows in its group
    run_compare(study_config(uri, compare={"include_sweep_trials": True}), tmp_path / "with_trials")
    assert "| none | 3 | 60/490 |" in (tmp_path / "with_trials" / "comparison.md").read_text()


def test_update_budget_from_the_logged_config() -> None:
    from types import SimpleNamespace

    from empdg.evaluation.comparison import update_budget

    def run(**params) -> SimpleNamespace:
        return SimpleNamespace(data=SimpleNamespace(params={k.replace("__", "."): str(v) for k, v in params.items()}))

    phases = {"training__phases__generator_pretrain": 100, "training__phases__critic_pretrain": 10,
              "training__phases__adversarial": 4}  # fmt: skip
    assert update_budget(run()) is None  # not a training run
    assert update_budget(run(**phases, adversarial__n_critic=2, adversarial__g_steps=3)) == 100 + 10 + 4 * 5
    assert update_budget(run(**phases)) == 100 + 10 + 4 * 6  # the schema's n_critic=1, g_steps=5, both critics
    # a run logged before config_version (the critic switches), and one of today (a list, as text)
    no_critics = {"adversarial__semantic_critic": False, "adversarial__emotion_critic": False}
    assert update_budget(run(**phases, **no_critics)) == 100
    assert update_budget(run(**phases, adversarial__critics="[]", config_version=2)) == 100
    assert update_budget(run(**phases, adversarial__critics="['emotion']", config_version=2)) == 100 + 10 + 4 * 6
    assert update_budget(run(**phases, adversarial__sample_temperature=0.7)) is None  # cannot be read today


def test_sweep_trials_are_left_out_unless_asked(study_store, tmp_path: Path, capsys) -> None:
    from empdg.errors import ConfigError

    uri, ids = study_store
    rows = run_compare(study_config(uri, group_by=None), tmp_path / "out")
    assert sorted(r for row in rows for r in row.run_ids) == sorted([ids["full-a"], ids["full-b"], ids["mle"]])
    assert "1 sweep trial(s) left out (compare.include_sweep_trials=true compares them)" in capsys.readouterr().out
    rows = run_compare(study_config(uri, group_by=None, compare={"include_sweep_trials": True}), tmp_path / "all")
    assert sorted(r for row in rows for r in row.run_ids) == sorted(ids.values())
    assert "left out" not in capsys.readouterr().out
    # only trials match: the error says why and how
    with pytest.raises(ConfigError, match=r"1 sweep trial\(s\) left out \(compare.include_sweep_trials=true"):
        run_compare(study_config(uri, filter="tags.sweep = 's'"), tmp_path / "none")
    with pytest.raises(ConfigError, match=r"compare.include_sweep_trials='no': give true or false"):
        run_compare(study_config(uri, compare={"include_sweep_trials": "no"}), tmp_path / "bad")


@pytest.mark.parametrize(
    ("compare", "message"),
    [
        ({"subset": "most"}, "compare.subset='most': choose one of all, feedback"),
        ({"bootstrap": {"n": -1}}, "compare.bootstrap.n=-1 must be a whole number >= 0"),
        ({"bootstrap": {"n": "abc"}}, "compare.bootstrap.n='abc' must be a whole number >= 0"),
        ({"bootstrap": {"seed": 0.5}}, "compare.bootstrap.seed=0.5 must be a whole number"),
        ({"bootstrap": {"confidence": 95}}, "compare.bootstrap.confidence=95 must be between 0 and 1"),
        ({"bootstrap": {"confidence": 1.0}}, "compare.bootstrap.confidence=1.0 must be between 0 and 1"),
        ({"bootstrap": {"metrics": ["bleu4", "dist_2"]}}, "compare.bootstrap.metrics: unknown ['bleu4']; choose from"),
    ],
)
def test_impossible_compare_settings_are_named_before_any_run_is_read(tmp_path: Path, compare, message) -> None:
    from empdg.errors import ConfigError

    missing = f"sqlite:///{tmp_path / 'never.db'}"  # searched only after the settings pass: never created
    with pytest.raises(ConfigError, match=re.escape(message)):
        run_compare(study_config(missing, compare=compare), tmp_path / "out")
    assert not (tmp_path / "never.db").exists() and not (tmp_path / "out").exists()


def test_every_problem_is_named_at_once() -> None:
    from empdg.evaluation.comparison import default_stats_settings, settings_problems

    settings = default_stats_settings()
    assert settings_problems(settings) == []
    settings.update(subset="x", include_sweep_trials="yes")
    settings["bootstrap"].update(n=1.5, seed=None)
    assert len(settings_problems(settings)) == 4


def test_learning_curves_have_one_line_per_run(study_store, tmp_path: Path, figures) -> None:
    from empdg.evaluation.comparison import row_colors

    uri, ids = study_store
    rows = run_compare(study_config(uri), tmp_path / "out")
    assert (tmp_path / "out" / "learning_curves.png").stat().st_size > 0
    (axis,) = figures["learning_curves.png"].axes
    assert axis.get_title() == "val/ppl" and axis.get_xlabel() == "global step"
    lines = {line.get_gid(): line for line in axis.get_lines()}
    assert set(lines) == {ids["full-a"], ids["full-b"], ids["mle"]}  # the sweep trial is left out here too
    assert list(lines[ids["full-a"]].get_xdata()) == [0, 100, 200]
    assert list(lines[ids["full-a"]].get_ydata()) == [90.0, 60.0, 45.0]
    # a resumed run logged step 100 twice: the later value counts
    assert list(lines[ids["mle"]].get_xdata()) == [0, 100] and list(lines[ids["mle"]].get_ydata()) == [80.0, 65.0]
    colors = row_colors(rows)  # a run's line has its row's colour, as in the bar chart
    assert lines[ids["full-b"]].get_color() == colors["none"] and lines[ids["mle"]].get_color() == colors["no_critics"]
    labels = [text.get_text() for text in figures["learning_curves.png"].legends[0].get_texts()]
    assert labels == ["no_critics", "none"]  # the rows' order
