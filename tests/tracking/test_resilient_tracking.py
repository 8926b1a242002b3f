"""A tracking store that fails must never stop training: real stores, tiny real runs.

(a) a SQLite store that answers reads but refuses writes (opened read-only through a SQLite URI
filename, which holds even for root, unlike chmod) and a store under a regular file: the start-up
check writes, so the run warns once and logs to the fallback store in its folder from the start;
(b) a real ``mlflow server`` (artifact serving on) killed in the middle of a run: one warning, training
finishes, the steps and files before the kill are on the server (its files through its artifact proxy),
the steps and files after it in the fallback store, nothing dropped, and the summary says so.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import pytest
import pytorch_lightning as pl
from mlflow.tracking import MlflowClient
from tiny import tiny_overrides

from empdg.config import compose
from empdg.tracking.local_server import LocalMlflowServer
from empdg.tracking.resilient_logger import ResilientMLFlowLogger, TrackingFallbackWarning, build_logger
from empdg.tracking.store import HTTP_SETTINGS, probe_tracking_store
from empdg.training.run import run_training

STEPS = 24  # generator updates of the tiny run; validation every 8


def compose_run(root: Path, *overrides: str):
    base = [
        *tiny_overrides(mle_only=True),
        "logger=mlflow",
        "training.sample_generations=0",
        f"training.phases.generator_pretrain={STEPS}",
        "trainer.val_check_interval=8",
        "trainer.log_every_n_steps=1",
        "trainer.limit_val_batches=1",
        f"paths.root_dir={root}",
        f"paths.output_dir={root / 'run'}",
    ]
    return compose("train", [*base, *overrides])


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """build_logger sets MLflow's HTTP variables process-wide: put the old values back afterwards."""
    monkeypatch.chdir(tmp_path)
    for env in HTTP_SETTINGS.values():
        monkeypatch.delenv(env, raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def train_recording_warnings(cfg, callbacks=()) -> tuple[dict, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = run_training(cfg, extra_callbacks=list(callbacks))
    messages = [str(w.message) for w in caught if issubclass(w.category, TrackingFallbackWarning)]
    return metrics, messages


def only_run(uri: str):
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1, [r.info.run_id for r in runs]
    return client, runs[0]


def steps_of(client: MlflowClient, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def _unwritable_sqlite(tmp_path: Path) -> str:
    db = tmp_path / "store" / "mlflow.db"
    db.parent.mkdir()
    MlflowClient(tracking_uri=f"sqlite:///{db}").create_experiment("quickstart")  # a real store with a schema
    return f"sqlite+pysqlite:///file:{db}?mode=ro&uri=true"  # reads answer, every write fails (root included)


def _under_a_file(tmp_path: Path) -> str:
    (tmp_path / "not_a_folder").write_text("a regular file\n")
    return f"sqlite:///{tmp_path / 'not_a_folder' / 'mlflow.db'}"


@pytest.mark.slow
@pytest.mark.parametrize("make_store", [_unwritable_sqlite, _under_a_file], ids=["read-only", "under-a-file"])
def test_unwritable_store_is_found_at_start_and_the_run_falls_back(tmp_path, capsys, make_store) -> None:
    uri = make_store(tmp_path)
    cfg = compose_run(tmp_path, f"logger.tracking_uri='{uri}'")
    metrics, messages = train_recording_warnings(cfg)

    assert "val/ppl" in metrics
    run_dir = tmp_path / "run"
    assert list((run_dir / "checkpoints").glob("*.ckpt"))
    assert len(messages) == 1 and "not writable" in messages[0] and uri in messages[0]
    fallback = f"sqlite:///{run_dir / 'mlruns' / 'mlflow.db'}"
    client, run = only_run(fallback)
    assert run.info.status == "FINISHED"
    assert run.data.params["model.emb_dim"] == "16" and "val/ppl" in run.data.metrics
    assert run.data.tags["empdg.tracking.primary_uri"] == uri
    assert steps_of(client, run.info.run_id, "train/loss")[-1] >= STEPS - 2
    assert "config.yaml" in [a.path for a in client.list_artifacts(run.info.run_id)]
    out = capsys.readouterr().out
    assert str(run_dir / "mlruns" / "mlflow.db") in out and run.info.run_id in out
    if make_store is _unwritable_sqlite:  # nothing was written to the read-only store
        primary = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}")
        assert primary.search_runs([primary.get_experiment_by_name("quickstart").experiment_id]) == []


def test_start_up_probe_writes(tmp_path) -> None:
    read_only = _unwritable_sqlite(tmp_path)
    assert MlflowClient(tracking_uri=read_only).search_experiments()  # a read-only check would pass
    problem = probe_tracking_store(read_only, "quickstart")
    assert problem is not None and "readonly" in problem
    assert probe_tracking_store(f"sqlite:///{tmp_path / 'ok' / 'mlflow.db'}", "quickstart") is None


def test_a_store_that_refuses_a_value_is_not_a_failing_store(tmp_path) -> None:
    """A param logged again with another value is refused by a healthy store: skip it, stay there."""
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    config = {
        "name": "mlflow",
        "tracking_uri": uri,
        "artifact_location": str(tmp_path / "mlruns" / "artifacts"),
        "experiment_name": "quickstart",
        "run_name": "refused",
    }
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        logger = build_logger(config, tmp_path, {"model": "empdg"})
        assert isinstance(logger, ResilientMLFlowLogger)
        logger.log_hyperparams({"a": 1})
        logger.log_hyperparams({"a": 2})
        logger.log_metrics({"m": 1.0}, step=3)
        logger.finalize("success")
    assert not [w for w in caught if issubclass(w.category, TrackingFallbackWarning)]
    assert logger.fallback is None and logger.ledgers["refused"].params == {"a"}
    run = MlflowClient(tracking_uri=uri).get_run(logger.run_id)
    assert run.data.params["a"] == "1" and run.data.metrics["m"] == 1.0 and run.info.status == "FINISHED"
    assert "refused by the store: 1 params" in logger.describe()


# ---- (b) a real MLflow server (tests/tracking/conftest.py), killed mid-run


class KillServerAt(pl.Callback):
    """Kill the tracking server after optimizer step ``step`` (and wait until it is gone)."""

    def __init__(self, server: LocalMlflowServer, step: int) -> None:
        self.server = server
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step and self.server.process.poll() is None:
            self.server.stop()


@pytest.mark.slow
def test_server_killed_mid_run_training_finishes_on_the_local_fallback(tmp_path, capsys, mlflow_server) -> None:
    uri, server_db, process = mlflow_server.uri, mlflow_server.db, mlflow_server.process
    kill_at = 10
    cfg = compose_run(
        tmp_path,
        f"logger.tracking_uri={uri}",
        "logger.http_max_retries=0",
        "logger.http_timeout=5",
        "training.sample_generations=1",  # samples/step_*.txt at steps 8 (server up), 16 and 24 (server gone)
    )
    started = time.monotonic()
    metrics, messages = train_recording_warnings(cfg, [KillServerAt(mlflow_server, kill_at)])
    elapsed = time.monotonic() - started

    assert process.poll() is not None  # the server really died mid-run
    assert "val/ppl" in metrics  # ... and training finished
    run_dir = tmp_path / "run"
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert len(messages) == 1, messages  # warned once, not at every step
    assert uri in messages[0] and "fallback" in messages[0]
    assert elapsed < 120  # no minutes of HTTP retries

    # before the kill: on the server (read its database directly, the server is gone)
    primary, server_run = only_run(f"sqlite:///{server_db}")
    before = steps_of(primary, server_run.info.run_id, "train/loss")
    assert before and max(before) <= kill_at
    assert server_run.data.params["model.emb_dim"] == "16"

    # after the kill: in the fallback store in the run folder, which has the params too
    fallback_uri = f"sqlite:///{run_dir / 'mlruns' / 'mlflow.db'}"
    client, run = only_run(fallback_uri)
    after = steps_of(client, run.info.run_id, "train/loss")
    assert after and min(after) > max(before) and max(after) >= STEPS - 2
    assert "val/ppl" in run.data.metrics and run.info.status == "FINISHED"
    assert run.data.params["model.emb_dim"] == "16"
    assert run.data.tags["empdg.tracking.primary_run_id"] == server_run.info.run_id

    # the end of the run says where each part went, and the run folder keeps the detail
    out = capsys.readouterr().out
    assert "tracking was split" in out
    assert f"primary  {uri} run {server_run.info.run_id}" in out
    assert f"fallback {fallback_uri} run {run.info.run_id}" in out
    report = json.loads((run_dir / "tracking_report.json").read_text())
    assert report["stores"]["primary"]["metrics"]["train/loss"]["last_step"] == max(before)
    assert report["stores"]["fallback"]["metrics"]["train/loss"]["first_step"] == min(after)
    assert "config.yaml" in report["stores"]["primary"]["artifacts"]

    # nothing lost, artifacts included: what the server took went through its proxy into its artifact
    # folder (never a path of this client); what came after the kill is in the fallback, with copies
    # of the earlier files so the fallback run stands alone
    assert "dropped" not in report["stores"] and not (tmp_path / "mlruns").exists()
    assert server_run.info.artifact_uri.startswith("mlflow-artifacts:")
    on_server = {p.relative_to(mlflow_server.artifacts).as_posix() for p in mlflow_server.artifacts.rglob("*.*")}
    server_files = {name.split("/artifacts/", 1)[1] for name in on_server}
    assert {"config.yaml", "vocab.json", "samples/step_0000008.txt"} <= server_files, on_server
    assert set(report["stores"]["primary"]["artifacts"]) == server_files
    fallback_files = set(report["stores"]["fallback"]["artifacts"])
    assert {"config.yaml (copy)", "vocab.json (copy)", "samples/step_0000016.txt", "samples/step_0000024.txt"} <= (
        fallback_files
    )
    stored = {a.path for a in client.list_artifacts(run.info.run_id, "samples")}
    assert {"samples/step_0000016.txt", "samples/step_0000024.txt"} <= stored
    assert (run_dir / "mlruns" / "artifacts").is_dir()  # the fallback keeps its files in the run folder


# -- (c) runs started at once on a fresh store --------------------------------------------------------------------
FIRST_RUN = """
import sys, time, warnings
from pathlib import Path
from empdg.tracking.resilient_logger import build_logger

root, name = Path(sys.argv[1]), sys.argv[2]
config = {"name": "mlflow", "tracking_uri": f"sqlite:///{root}/store/mlflow.db", "experiment_name": "race",
          "run_name": name, "artifact_location": str(root / "artifacts")}
(root / f"{name}.ready").touch()
while not (root / "go").exists():  # both processes past their imports: start together
    time.sleep(0.001)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    logger = build_logger(config, root / name, {})
print(logger._tracking_uri)
print([str(w.message) for w in caught if issubclass(w.category, UserWarning) and "fallback" in str(w.message)])
"""


def test_two_runs_started_at_once_on_a_fresh_store_both_land_in_it(tmp_path: Path) -> None:
    """MLflow creates a fresh store's tables on first use; without a lock the second creator failed
    (``duplicate column name``) and logged to its own fallback store."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = [
        subprocess.Popen([sys.executable, "-c", FIRST_RUN, str(tmp_path), name], env=env, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for name in ("a", "b")
    ]  # fmt: skip
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"{name}.ready").exists() for name in "ab") and time.monotonic() < deadline:
        time.sleep(0.01)
    (tmp_path / "go").touch()
    store = f"sqlite:///{tmp_path}/store/mlflow.db"
    for run in runs:
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, err[-3000:]
        assert out.splitlines() == [store, "[]"], out + err[-3000:]
    client = MlflowClient(tracking_uri=store)
    assert len(client.search_runs([client.get_experiment_by_name("race").experiment_id])) == 2
