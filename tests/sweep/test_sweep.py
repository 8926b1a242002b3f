"""The sweep command end to end on the built-in data (tiny budgets): tracking, resuming, pruning, failed trials; a
sweep that did nothing useful says so, a broken study config or storage is one clear error naming the key, two
processes on one study never repeat a parameter set, the best configuration re-runs exactly; plus the pure helpers
of empdg.sweep."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from tiny import REPO

from empdg.sweep.pruning import Objective, build_pruner
from empdg.sweep.space import format_value, forwarded_overrides, merge_overrides, parse_space
from empdg.sweep.study import build_sampler, trial_seed

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


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def run_sweep_py(root: Path, *overrides: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(REPO / "sweep.py"), *TINY, f"paths.root_dir={root}", *overrides]
    return subprocess.run(command, cwd=root, env=ENV, capture_output=True, text=True, timeout=600)


def sweep(root: Path, *overrides: str) -> subprocess.CompletedProcess:
    done = run_sweep_py(root, *overrides)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return done


def grid_over_accumulate(choices: str) -> list[str]:
    """A grid study over ``training.accumulate_grad_batches`` alone (the batch size pinned): a trial per value."""
    return [
        "sweep.sampler.name=grid",
        "~sweep.space.lr",
        "~sweep.space.dropout",
        "~sweep.space.label_smoothing",
        "sweep.space.batch_size.choices=[16]",
        f"+sweep.space.accumulate={{key:training.accumulate_grad_batches,type:categorical,choices:{choices}}}",
    ]


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
    done = sweep(root, "sweep.study_name=invalid", "sweep.n_trials=2", *grid_over_accumulate("[0,1]"))
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


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("sweep.direction=up", "sweep.direction='up': use minimize or maximize"),
        ("sweep.n_trials=-1", "sweep.n_trials=-1 must be a whole number >= 0"),
        ("sweep.n_jobs=0", "sweep.n_jobs=0 must be a whole number >= 1"),
        ("sweep.top_k=0", "sweep.top_k=0 must be a whole number >= 1"),
        ("sweep.timeout=-5", "sweep.timeout=-5 must be seconds > 0, or null"),
        ("sweep.timeout=0", "sweep.timeout=0 must be seconds > 0, or null"),
        ("sweep.heartbeat_interval=0", "sweep.heartbeat_interval=0 must be whole seconds >= 1"),
        ("sweep.grace_period=1.5", "sweep.grace_period=1.5 must be whole seconds >= 1"),
        ("sweep.sqlite_timeout=0", "sweep.sqlite_timeout=0 must be seconds > 0"),
        ("sweep.sampler.seed=abc", "sweep.sampler.seed='abc' must be a whole number, or null"),
    ],
)
def test_impossible_study_settings_are_named_before_the_study_is_opened(tmp_path: Path, override, expected) -> None:
    from empdg.config import compose
    from empdg.sweep.runner import SweepConfigError, prepare

    overrides = ["sweep=quickstart", override, f"paths.root_dir={tmp_path}", "logger=none"]
    with pytest.raises(SweepConfigError, match=re.escape(expected)):
        prepare(compose("sweep_root", overrides), overrides, tmp_path / "sweep")
    assert not (tmp_path / "optuna").exists()


def test_every_impossible_study_setting_is_named_at_once() -> None:
    from empdg.sweep.runner import settings_problems

    good = {"direction": "maximize", "n_trials": 0, "n_jobs": 2, "top_k": 1, "timeout": 0.5, "sqlite_timeout": 1,
            "heartbeat_interval": None, "grace_period": None, "sampler": {"seed": None}}  # fmt: skip
    assert settings_problems(good) == []
    bad = {**good, "direction": "min", "n_jobs": True, "timeout": "1h", "sampler": {"seed": 1.0}}
    assert [p.split("=")[0] for p in settings_problems(bad)] == [
        "sweep.direction", "sweep.n_jobs", "sweep.timeout", "sweep.sampler.seed"]  # fmt: skip


# ---- every trial failed -> non-zero exit


@pytest.mark.slow
def test_a_sweep_whose_trials_all_failed_exits_non_zero(tmp_path: Path) -> None:
    done = run_sweep_py(tmp_path, "sweep.study_name=allfail", "sweep.n_trials=2", *grid_over_accumulate("[0,-1]"))
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-3000:]
    assert "this run: complete=0, pruned=0, fail=2" in done.stdout
    assert "every trial of this run failed (2 of 2" in done.stderr
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    experiment = client.get_experiment_by_name("quickstart").experiment_id
    (parent,) = client.search_runs([experiment], "tags.`sweep.role` = 'parent'")
    assert parent.info.status == "FAILED"


# ---- a removed or "emptied" study key is named, not a KeyError and not silently ignored


@pytest.mark.slow
@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("~sweep.space", "sweep.space is missing"),
        ("sweep.space={}", "sweep.space={} does not empty sweep.space"),
        ("~sweep.pruner", "sweep.pruner is missing"),
    ],
)
def test_a_broken_study_config_is_a_clear_error(tmp_path: Path, override: str, expected: str) -> None:
    # n_trials=0: had the override been ignored, the sweep would end at once with status 0
    done = run_sweep_py(tmp_path, "sweep.study_name=broken", "sweep.n_trials=0", override)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output[-3000:]
    assert expected in done.stderr
    assert "KeyError" not in output and "Traceback" not in output
    assert not (tmp_path / "optuna" / "optuna.db").exists()  # stopped before the study was touched


# ---- two processes, same command, one study: no repeated parameter sets

WORKER = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import torch

    from empdg.config import compose
    from empdg.sweep.runner import optimize, prepare

    root, n_trials, *overrides = sys.argv[1:]
    torch.set_num_threads(1)
    cfg = compose("sweep_root", overrides)
    # what the sweep command does in each process: the same command gives the same plan in both
    plan, _ = prepare(cfg, overrides, Path(root) / "sweeps" / "twins")
    optimize(plan, 0, int(n_trials))
    """
)


@pytest.mark.slow
def test_two_processes_on_one_study_never_repeat_a_parameter_set(tmp_path: Path) -> None:
    overrides = [*TINY, f"paths.root_dir={tmp_path}", "sweep.study_name=twins", "logger=none"]
    storage = f"sqlite:///{tmp_path}/optuna/optuna.db"
    (tmp_path / "optuna").mkdir()
    optuna.create_study(study_name="twins", storage=storage, direction="minimize")  # as sweep.py opens it
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    command = [sys.executable, str(script), str(tmp_path), "2", *overrides]
    workers = [
        subprocess.Popen(command, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    outputs = [worker.communicate(timeout=600)[0] for worker in workers]
    assert [w.returncode for w in workers] == [0, 0], "\n".join(o[-3000:] for o in outputs)

    trials = optuna.load_study(study_name="twins", storage=storage).get_trials(deepcopy=False)
    assert len(trials) == 4 and all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    parameter_sets = [tuple(sorted(t.params.items())) for t in trials]
    assert len(set(parameter_sets)) == 4, parameter_sets


def test_each_trial_draws_with_its_own_seed_and_one_process_stays_reproducible() -> None:
    specs = parse_space({"x": {"key": "a", "type": "float", "low": 0.0, "high": 1.0}})
    config = {"name": "tpe", "seed": 7, "n_startup_trials": 3}

    def draws(n: int) -> list[float]:
        study = optuna.create_study(sampler=build_sampler(config, specs))
        study.optimize(lambda t: specs[0].suggest(t), n_trials=n)
        return [t.params["x"] for t in study.trials]

    first = draws(5)
    assert first == draws(5)  # one process: the study seed still fixes the whole study
    assert len(set(first)) == 5
    assert len({trial_seed(7, n) for n in range(1000)}) == 1000
    assert trial_seed(7, 0) != trial_seed(8, 0)


# ---- the study's storage: a file SQLite cannot use is the user's to fix (exit 2, not 1: "every trial failed")


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda path: path.write_bytes(b"not a database, just some text that is long"), "file is not a database"),
        (lambda path: path.mkdir(), "it is a folder"),
    ],
    ids=["corrupt", "folder"],
)
def test_a_storage_file_sqlite_cannot_use_is_a_config_error(tmp_path: Path, make, expected: str) -> None:
    from empdg.errors import ConfigError
    from empdg.sweep.study import build_storage

    path = tmp_path / "sweep.db"
    make(path)
    with pytest.raises(ConfigError, match=rf"sweep.storage=sqlite:///{path}: SQLite cannot use {path} .*{expected}"):
        build_storage({"storage": f"sqlite:///{path}"})


def test_a_storage_that_refuses_writes_fails_opening_the_study_as_a_config_error(tmp_path: Path) -> None:
    import sqlalchemy.exc

    from empdg.errors import ConfigError
    from empdg.sweep.pruning import build_pruner
    from empdg.sweep.study import build_storage, open_study

    storage = build_storage({"storage": f"sqlite:///{tmp_path / 'sweep.db'}"})

    def readonly(*args, **kwargs):  # what SQLite answers in a read-only folder (root may write anywhere)
        raise sqlalchemy.exc.OperationalError("INSERT", {}, Exception("attempt to write a readonly database"))

    storage.create_new_study = readonly
    config = {"direction": "minimize", "study_name": "s"}
    with pytest.raises(ConfigError, match="attempt to write a readonly database.*make the folder writable"):
        open_study(config, optuna.samplers.RandomSampler(), build_pruner({"name": "none"}), storage)


# ---- the best configuration re-runs exactly, whatever its values hold


def test_best_overrides_rerun_values_with_spaces_and_shell_characters(tmp_path: Path) -> None:
    import shlex

    from empdg.config.overrides_file import expand_overrides_files
    from empdg.sweep.report import write_best

    overrides = ["model.dropout=0.25", "experiment_name='my run; $(touch pwned) *'", f"paths.output_dir={tmp_path}/t"]
    study = optuna.create_study(study_name="s")
    study.enqueue_trial({})
    trial = study.ask()
    trial.set_user_attr("overrides", overrides)
    study.tell(trial, 1.0)
    write_best(study, study.best_trial, "val/loss", tmp_path)
    wanted = overrides[:2]  # the trial's own folder is not part of its configuration
    argv = [f"overrides_file={tmp_path / 'best_overrides.txt'}", "seed=3"]
    assert expand_overrides_files(argv) == [*wanted, "seed=3"]
    command = yaml_command(tmp_path / "best_trial.yaml")
    assert shlex.split(command) == ["python", "train.py", *wanted]  # what a shell makes of the printed command


def yaml_command(path: Path) -> str:
    import yaml

    return yaml.safe_load(path.read_text(encoding="utf-8"))["command"]


def test_overrides_read_back_from_the_storage_are_validated(tmp_path: Path) -> None:
    from empdg.data.errors import InvalidFileError
    from empdg.sweep.report import best_overrides

    study = optuna.create_study(study_name="s")
    trial = study.ask()
    trial.set_user_attr("overrides", "model.dropout=0.1")  # a string, not a list: it was iterated letter by letter
    study.tell(trial, 1.0)
    with pytest.raises(InvalidFileError, match=r"trial 0 user_attrs.overrides: Input should be a valid list"):
        best_overrides(study.best_trial)
