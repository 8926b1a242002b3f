"""sweep.py must say when it did nothing useful, name the key of a broken study config, and never let
two processes on one study repeat each other's parameter sets."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from empdg.sweep.space import parse_space
from empdg.sweep.study import build_sampler, trial_seed

REPO = Path(__file__).resolve().parents[2]
TINY = [
    "sweep=quickstart",
    "training.phases.generator_pretrain=20",
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


# ---- every trial failed -> non-zero exit


@pytest.mark.slow
def test_a_sweep_whose_trials_all_failed_exits_non_zero(tmp_path: Path) -> None:
    done = run_sweep_py(
        tmp_path,
        "sweep.study_name=allfail",
        "sweep.n_trials=2",
        "sweep.sampler.name=grid",
        "~sweep.space.lr",
        "~sweep.space.dropout",
        "~sweep.space.label_smoothing",
        "sweep.space.batch_size.choices=[16]",
        "+sweep.space.accumulate={key:training.accumulate_grad_batches,type:categorical,choices:[0,-1]}",
    )
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
