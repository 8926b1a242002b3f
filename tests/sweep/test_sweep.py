"""The sweep command end to end on the built-in data (tiny budgets), plus the pure helpers of empdg.sweep."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from empdg.sweep.pruning import Objective, build_pruner
from empdg.sweep.space import format_value, forwarded_overrides, merge_overrides, parse_space

REPO = Path(__file__).resolve().parents[2]
BUDGET = 20  # generator updates per trial; validation every 10
TINY = [
    "sweep=quickstart",
    f"training.phases.generator_pretrain={BUDGET}",
    "trainer.val_check_interval=10",
    "trainer.limit_val_batches=2",
    # the preset's critic phases are left out: these tests are about the study, not the run (the preset's phases:
    # test_sweep_progress_and_plots.py)
    "training.phases.critic_pretrain=0",
    "training.phases.adversarial=0",
]


def sweep(root: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [sys.executable, str(REPO / "sweep.py"), *TINY, f"paths.root_dir={root}", *overrides]
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return done


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One root for the module's sweeps: the data cache and MLflow's database set-up are paid once."""
    return tmp_path_factory.mktemp("sweeps")


def load(root: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{root}/optuna/optuna.db")


def mlflow_runs(root: Path, study: str) -> list:
    client = MlflowClient(tracking_uri=f"sqlite:///{root}/mlruns/mlflow.db")
    experiment = client.get_experiment_by_name("quickstart").experiment_id
    return client.search_runs([experiment], f"tags.sweep = '{study}'")


@pytest.mark.slow
def test_sweep_completes_tracks_and_resumes(root: Path) -> None:
    no_pruning = "sweep.pruner.n_warmup_steps=1000"  # this test is about tracking and resuming, not pruning
    done = sweep(root, "sweep.study_name=main", "sweep.n_trials=3", no_pruning)
    assert "complete=3, pruned=0, fail=0" in done.stdout
    study = load(root, "main")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3

    runs = mlflow_runs(root, "main")
    parents = [r for r in runs if r.data.tags.get("sweep.role") == "parent"]
    children = [r for r in runs if r.data.tags.get("sweep.role") == "trial"]
    assert len(parents) == 1 and len(children) == 3
    parent = parents[0]
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}
    for child in children:
        assert {"lr", "dropout", "label_smoothing", "batch_size"} <= set(child.data.params)
        assert child.data.tags["optuna.state"] == "COMPLETE" and "val/ppl" in child.data.metrics
        assert child.data.tags["model"] == "empdg" and child.data.tags["ablation"] == "none"
    best = study.best_trial
    assert parent.data.metrics["best/value"] == pytest.approx(best.value)
    assert parent.data.params["best.lr"] == str(best.params["lr"])
    out = next((root / "sweeps" / "main").iterdir())
    overrides = (out / "best_overrides.txt").read_text().split()
    assert f"optim.lr={best.params['lr']!r}" in overrides and not any("output_dir" in o for o in overrides)
    assert (out / "optimization_history.png").exists() and not (out / "param_importances.png").exists()
    assert "parameter importances need >= 5 complete trials (sweep.importance_min_trials; have 3)" in done.stdout
    assert [line.split(" after ")[0] for line in done.stdout.splitlines() if " COMPLETE after " in line] == [
        "trial 1/3 COMPLETE", "trial 2/3 COMPLETE", "trial 3/3 COMPLETE",
    ]  # fmt: skip

    done = sweep(root, "sweep.study_name=main", "sweep.n_trials=1", no_pruning)  # same name: resumed, not restarted
    assert "trial 1/1 (study trial 3) started: lr=" in done.stdout
    study = load(root, "main")
    assert len(study.trials) == 4 and all(t.state == TrialState.COMPLETE for t in study.trials)
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == 4  # no repeated random start-up points
    runs = mlflow_runs(root, "main")
    assert sum(r.data.tags.get("sweep.role") == "parent" for r in runs) == 1  # one parent per study
    assert sum(r.data.tags.get("sweep.role") == "trial" for r in runs) == 4


@pytest.mark.slow
def test_pruning_stops_the_trial_early(root: Path) -> None:
    # a threshold no perplexity can meet: pruned at the first report (step 10 of 20)
    pruner = ["sweep.pruner.name=threshold", "+sweep.pruner.upper=0.0", "sweep.pruner.n_warmup_steps=0"]
    done = sweep(root, "sweep.study_name=prune", "sweep.n_trials=1", *pruner)
    assert "pruned=1" in done.stdout
    (trial,) = load(root, "prune").trials
    assert trial.state == TrialState.PRUNED
    assert trial.user_attrs["train_steps"] == 10 < BUDGET
    assert list(trial.intermediate_values) == [10]
    (child,) = [r for r in mlflow_runs(root, "prune") if r.data.tags.get("sweep.role") == "trial"]
    assert child.info.status == "KILLED" and child.data.tags["optuna.state"] == "PRUNED"


@pytest.mark.slow
def test_invalid_sampled_configuration_fails_and_study_goes_on(root: Path) -> None:
    done = sweep(
        root,
        "sweep.study_name=invalid",
        "sweep.n_trials=2",
        "sweep.sampler.name=grid",
        "~sweep.space.lr",
        "~sweep.space.dropout",
        "~sweep.space.label_smoothing",
        "sweep.space.batch_size.choices=[16]",
        "+sweep.space.accumulate={key:training.accumulate_grad_batches,type:categorical,choices:[0,1]}",
    )
    assert "complete=1, pruned=0, fail=1" in done.stdout
    trials = {t.params["accumulate"]: t for t in load(root, "invalid").trials}
    assert trials[0].state == TrialState.FAIL
    reason = trials[0].user_attrs["fail_reason"]
    assert "training.accumulate_grad_batches" in reason and "must be >= 1" in reason, reason
    assert trials[1].state == TrialState.COMPLETE
    failed = [r for r in mlflow_runs(root, "invalid") if r.data.tags.get("optuna.state") == "FAIL"]
    assert len(failed) == 1 and failed[0].info.status == "FAILED"


def test_space_is_checked_before_the_study() -> None:
    specs = parse_space({"lr": {"key": "optim.lr", "type": "float", "low": 1e-4, "high": 1e-2, "log": True}})
    assert specs[0].key == "optim.lr" and specs[0].log
    with pytest.raises(ValueError, match="log scale"):
        parse_space({"x": {"key": "a", "type": "float", "low": 0.0, "high": 1.0, "log": True}})
    with pytest.raises(ValueError, match="type"):
        parse_space({"x": {"key": "a", "type": "floot", "low": 0, "high": 1}})
    grid = parse_space({"d": {"key": "model.dropout", "type": "float", "low": 0.0, "high": 0.2, "step": 0.1}})
    assert grid[0].grid_values() == [0.0, 0.1, 0.2]


def test_overrides_are_forwarded_and_merged() -> None:
    task = ["sweep.n_trials=5", "sweep=quickstart", "data=empathetic_dialogues", "hydra.verbose=true", "seed=3"]
    assert forwarded_overrides(task) == ["data=empathetic_dialogues", "seed=3"]
    assert merge_overrides(["a=1", "b=2"], ["++a=3"]) == ["b=2", "++a=3"]
    assert format_value(1e-05) == "1e-05" and format_value("soft") == "soft" and format_value("a b") == "'a b'"
    assert format_value(True) == "true" and format_value("null") == "'null'"


def test_objective_and_pruners() -> None:
    assert Objective("val/ppl")({"val/ppl": 12.0}) == 12.0
    weighted = Objective("val/ppl", {"val/ppl": 1.0, "val/emotion_acc": -10.0})
    assert weighted({"val/ppl": 12.0, "val/emotion_acc": 0.5}) == pytest.approx(7.0)
    assert weighted({"val/ppl": 12.0}) is None
    assert isinstance(build_pruner({"name": "median", "n_startup_trials": 1}), optuna.pruners.MedianPruner)
    assert isinstance(build_pruner({"name": "none"}), optuna.pruners.NopPruner)
    assert isinstance(build_pruner({"name": "optuna.pruners:NopPruner"}), optuna.pruners.NopPruner)
    with pytest.raises(ValueError):
        build_pruner({"name": "sometimes"})


def test_workers_share_runtime_num_threads(tmp_path: Path) -> None:
    from empdg.config import compose
    from empdg.sweep.runner import prepare, worker_threads

    overrides = ["sweep=quickstart", "runtime.num_threads=5", f"paths.root_dir={tmp_path}", "logger=none"]
    plan, base_cfg = prepare(compose("sweep_root", overrides), overrides, tmp_path / "sweep")
    assert plan.num_threads == 5 and base_cfg.runtime.num_threads == 5  # trials see it too
    assert [worker_threads(5, n) for n in (1, 2, 3, 8)] == [5, 2, 1, 1]
