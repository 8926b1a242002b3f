"""One Optuna study shared by two sweep.py processes on a real PostgreSQL server (a throwaway cluster).

The server is Debian's PostgreSQL (initdb/pg_ctl), started in a temporary folder on 127.0.0.1 only.
Without its binaries the test is skipped with the command that installs them -- except under CI
(env CI set), where .ci/run installs them and a missing server is a failure, not a silent skip.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from tiny import REPO

from empdg.errors import ConfigError
from empdg.sweep.postgres_cluster import INSTALL_HINT, ThrowawayCluster, find_postgres_bin, free_port
from empdg.sweep.study import build_storage, check_storage, masked, server_url

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# Random sampler, study seed 0: trial n draws with a seed mixed from 0 and n, so its parameters do not depend on
# which process ran it. accumulate=0 is an invalid config (FAIL at once); steps=10 reaches the report at step 10,
# past the warm-up, where a threshold no perplexity meets prunes it; steps=5 completes (its only report, at step 5,
# is inside the warm-up). With seed 0, trials 0-4 are COMPLETE, COMPLETE, PRUNED, FAIL, PRUNED.
STUDY = [
    "sweep=quickstart",
    "logger=none",
    "runtime.num_threads=1",
    "trainer.val_check_interval=5",
    "trainer.limit_val_batches=2",
    "sweep.study_name=shared",
    "sweep.sampler.name=random",
    "sweep.sampler.seed=0",
    "~sweep.space.dropout",
    "~sweep.space.label_smoothing",
    "~sweep.space.batch_size",
    "+sweep.space.steps={key:training.phases.generator_pretrain,type:categorical,choices:[5,10]}",
    "+sweep.space.accumulate={key:training.accumulate_grad_batches,type:categorical,choices:[0,1]}",
    "sweep.pruner.name=threshold",
    "+sweep.pruner.upper=0.0",
    "sweep.pruner.n_warmup_steps=8",
    # generator pre-training only: the trial's budget is its `steps`, as the expected states assume
    "training.phases.critic_pretrain=0",
    "training.phases.adversarial=0",
]


def expected_state(params: dict) -> TrialState:
    if params["accumulate"] == 0:
        return TrialState.FAIL
    return TrialState.PRUNED if params["steps"] == 10 else TrialState.COMPLETE


@pytest.fixture(scope="module")
def postgres_bin() -> Path:
    found = find_postgres_bin()
    if found is None:
        message = f"PostgreSQL's initdb/pg_ctl not found (PATH, /usr/lib/postgresql/*/bin): {INSTALL_HINT}"
        if os.environ.get("CI"):
            pytest.fail(f"under CI the PostgreSQL test must run: {message} (.ci/run installs it)")
        pytest.skip(message)
    return found


def sweep_command(root: Path, url: str, n_trials: int) -> list[str]:
    return [sys.executable, str(REPO / "sweep.py"), *STUDY, f"paths.root_dir={root}", f"sweep.storage={url}",
            f"sweep.n_trials={n_trials}"]  # fmt: skip


@pytest.mark.slow
def test_two_sweep_processes_share_one_study_on_postgres(tmp_path: Path, postgres_bin: Path) -> None:
    with ThrowawayCluster(tmp_path, postgres_bin, settings={"fsync": "off"}) as cluster:
        url = cluster.create_database("optuna")
        roots = [tmp_path / "machine_a", tmp_path / "machine_b"]  # as on two machines: nothing shared but the server
        workers = []
        for root in roots:
            root.mkdir()
            workers.append(
                subprocess.Popen(
                    sweep_command(root, url, 2),
                    cwd=root,
                    env=ENV,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )  # fmt: skip
            )
        outputs = [worker.communicate(timeout=600)[0] for worker in workers]
        assert [w.returncode for w in workers] == [0, 0], "\n\n".join(o[-3000:] for o in outputs)

        trials = optuna.load_study(study_name="shared", storage=server_url(url)).get_trials(deepcopy=False)
        assert sorted(t.number for t in trials) == list(range(4))  # every trial recorded once
        for trial in trials:
            assert trial.state == expected_state(trial.params), (trial.number, trial.params, trial.state)
        states = {t.state for t in trials}
        assert {TrialState.PRUNED, TrialState.FAIL} <= states, states
        assert all("must be >= 1" in t.user_attrs["fail_reason"] for t in trials if t.state == TrialState.FAIL)
        assert all(t.intermediate_values for t in trials if t.state == TrialState.PRUNED)
        assert len({tuple(sorted(t.params.items())) for t in trials}) == 4  # no duplicated parameter sets

        resumed = subprocess.run(sweep_command(roots[0], url, 1), cwd=roots[0], env=ENV, capture_output=True,
                                 text=True, timeout=600)  # fmt: skip
        assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
        assert "4 earlier trials" in resumed.stdout
        trials = optuna.load_study(study_name="shared", storage=server_url(url)).get_trials(deepcopy=False)
        assert sorted(t.number for t in trials) == list(range(5))
        assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL) for t in trials)
        assert len({tuple(sorted(t.params.items())) for t in trials}) == 5
        assert "postgresql" in resumed.stdout and "5 trials (1 in this run)" in resumed.stdout


def test_a_refused_server_is_an_error_naming_what_to_check() -> None:
    url = f"postgresql://empdg:secret@127.0.0.1:{free_port()}/optuna"  # nothing listens there
    with pytest.raises(ConfigError, match="refused the connection") as caught:
        build_storage({"storage": url})
    assert "createdb" in str(caught.value) and "secret" not in str(caught.value)


def test_a_missing_driver_is_named_before_the_study() -> None:
    with pytest.raises(ValueError, match=r"driver pg8000, which is not installed: pip install pg8000 "):
        check_storage({"storage": "postgresql+pg8000://empdg@db-host/optuna"})
    assert server_url("postgres://u@h/db").startswith("postgresql+psycopg")  # the dev extra installs psycopg 3
    assert "secret" not in masked("postgresql://u:secret@h/db")
    assert server_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
