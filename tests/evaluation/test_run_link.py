"""Linking an evaluation to its training run never sends anything to a store that the run folder names.

A run folder may come from anyone. ``mlflow_run.json`` and ``config.yaml`` in it may name any tracking store
(another SQLite file, a remote server): the evaluation takes only the run id from them and talks only to its own
store, plus local stores strictly inside the run folder.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from empdg.evaluation.run_link import (
    RUN_RECORD_FILE,
    candidate_stores,
    find_training_run,
    log_test_metrics,
    write_run_record,
)

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8"}


@pytest.fixture
def listener() -> Iterator[tuple[str, socket.socket]]:
    """An http URL on 127.0.0.1 whose port listens but never answers: any connection attempt shows up."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}", server
    finally:
        server.close()


def connection_attempted(server: socket.socket) -> bool:
    readable, _, _ = select.select([server], [], [], 0.2)
    return bool(readable)


def make_store(path: Path, experiment: str = "exp", artifacts: Path | None = None) -> tuple[str, MlflowClient, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{path}"
    client = MlflowClient(tracking_uri=uri)
    location = (artifacts or path.parent / "artifacts").as_uri()
    return uri, client, client.create_experiment(experiment, artifact_location=location)


def hostile_folder(folder: Path, run_id: str, uri: str) -> None:
    """A run folder whose record and config name the store ``uri``."""
    folder.mkdir(parents=True, exist_ok=True)
    write_run_record(folder, run_id, uri, "0")
    config = {"logger": {"name": "mlflow", "tracking_uri": uri}, "data": {"name": "builtin"}}
    (folder / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")


def test_a_store_named_by_the_run_folder_is_never_created_or_written(tmp_path: Path) -> None:
    own_uri, own, experiment = make_store(tmp_path / "own" / "mlflow.db")
    run_id = own.create_run(experiment, run_name="trained").info.run_id
    elsewhere = tmp_path / "elsewhere" / "mlflow.db"
    folder = tmp_path / "outputs" / "exp" / "run"
    hostile_folder(folder, run_id, f"sqlite:///{elsewhere}")
    config = yaml.safe_load((folder / "config.yaml").read_text())

    assert candidate_stores(folder, own_uri, config) == [own_uri]
    found = find_training_run(folder, own_uri, config)
    assert found is not None and found.run_id == run_id and found.tracking_uri == own_uri
    log_test_metrics(found, {"ppl": 12.5}, "all")
    assert own.get_run(run_id).data.metrics["test/ppl"] == 12.5
    assert not elsewhere.exists() and not elsewhere.parent.exists()


def test_an_existing_foreign_store_is_not_searched_even_when_it_holds_the_run(tmp_path: Path) -> None:
    foreign_db = tmp_path / "victim" / "mlflow.db"
    foreign_uri, foreign, experiment = make_store(foreign_db)
    run_id = foreign.create_run(experiment).info.run_id
    before = foreign_db.read_bytes()
    own_uri, _, _ = make_store(tmp_path / "own" / "mlflow.db")
    folder = tmp_path / "outputs" / "exp" / "run"
    hostile_folder(folder, run_id, foreign_uri)

    assert find_training_run(folder, own_uri, yaml.safe_load((folder / "config.yaml").read_text())) is None
    assert foreign_uri not in candidate_stores(folder, own_uri)
    assert foreign_db.read_bytes() == before
    # without a store of its own, the evaluation does not fall back to the one the folder names
    assert find_training_run(folder, None) is None
    assert candidate_stores(folder, None) == []


def test_a_server_named_by_the_run_folder_is_never_contacted(tmp_path: Path, listener) -> None:
    url, server = listener
    own_uri, own, experiment = make_store(tmp_path / "own" / "mlflow.db")
    run_id = own.create_run(experiment).info.run_id
    folder = tmp_path / "outputs" / "exp" / "run"
    hostile_folder(folder, run_id, url)

    found = find_training_run(folder, own_uri, yaml.safe_load((folder / "config.yaml").read_text()))
    assert found is not None and (found.run_id, found.tracking_uri) == (run_id, own_uri)
    assert url not in candidate_stores(folder, own_uri, {"logger": {"tracking_uri": url}})
    assert not connection_attempted(server)


def test_the_folder_tag_links_when_the_recorded_id_is_unknown(tmp_path: Path) -> None:
    own_uri, own, experiment = make_store(tmp_path / "own" / "mlflow.db")
    folder = tmp_path / "outputs" / "exp" / "run"
    tagged = own.create_run(experiment, tags={"empdg.run_folder": str(folder.resolve())}).info.run_id
    hostile_folder(folder, "0123456789abcdef0123456789abcdef", f"sqlite:///{tmp_path / 'elsewhere.db'}")
    assert find_training_run(folder, own_uri).run_id == tagged
    # a run id that is no MLflow run id is ignored, not passed on
    write_run_record(folder, "../../etc/passwd", own_uri)
    assert find_training_run(folder, own_uri).run_id == tagged
    assert not (tmp_path / "elsewhere.db").exists()


def test_an_evaluation_run_is_never_taken_for_the_training_run(tmp_path: Path) -> None:
    own_uri, own, experiment = make_store(tmp_path / "own" / "mlflow.db")
    evaluation = own.create_run(experiment, tags={"empdg.role": "evaluation"}).info.run_id
    folder = tmp_path / "outputs" / "exp" / "run"
    hostile_folder(folder, evaluation, own_uri)
    assert find_training_run(folder, own_uri) is None


def test_the_fallback_store_inside_the_run_folder_is_used(tmp_path: Path, listener) -> None:
    url, server = listener
    folder = tmp_path / "outputs" / "exp" / "run"
    store = folder / "mlruns" / "mlflow.db"
    store_uri, client, experiment = make_store(store, artifacts=folder / "mlruns" / "artifacts")
    run_id = client.create_run(experiment).info.run_id
    hostile_folder(folder, run_id, url)  # training's primary store was a server; the run is in the fallback
    own_uri = f"sqlite:///{tmp_path / 'own' / 'mlflow.db'}"  # not created yet: skipped, and not created

    found = find_training_run(folder, own_uri)
    assert found is not None and (found.run_id, found.tracking_uri) == (run_id, f"sqlite:///{store.resolve()}")
    assert not (tmp_path / "own").exists()
    assert not connection_attempted(server)


def test_a_run_folder_store_with_artifacts_elsewhere_is_not_linked(tmp_path: Path) -> None:
    folder = tmp_path / "outputs" / "exp" / "run"
    store = folder / "mlruns" / "mlflow.db"
    _, client, experiment = make_store(store, artifacts=tmp_path / "outside")  # the evaluation's files would go there
    run_id = client.create_run(experiment).info.run_id
    write_run_record(folder, run_id, f"sqlite:///{store}")
    assert find_training_run(folder, None) is None


def test_a_store_inside_the_folder_named_by_its_record_is_used_but_not_a_link_out_of_it(tmp_path: Path) -> None:
    folder = tmp_path / "outputs" / "exp" / "run"
    inside = folder / "tracking" / "store.db"
    inside_uri, client, experiment = make_store(inside, artifacts=folder / "tracking" / "artifacts")
    run_id = client.create_run(experiment).info.run_id
    write_run_record(folder, run_id, inside_uri)
    assert find_training_run(folder, None).tracking_uri == f"sqlite:///{inside.resolve()}"

    # a symbolic link inside the folder that leads out of it is outside
    victim_uri, victim, victim_experiment = make_store(tmp_path / "victim" / "mlflow.db")
    victim_run = victim.create_run(victim_experiment).info.run_id
    other = tmp_path / "outputs" / "exp" / "other"
    other.mkdir(parents=True)
    (other / "mlruns").symlink_to(tmp_path / "victim", target_is_directory=True)
    write_run_record(other, victim_run, f"sqlite:///{other / 'mlruns' / 'mlflow.db'}")
    assert candidate_stores(other, None) == []
    assert find_training_run(other, None) is None


@pytest.mark.slow
def test_evaluate_links_in_its_own_store_and_ignores_the_stores_the_run_folder_names(
    tiny_checkpoint: Path, tmp_path: Path, listener
) -> None:
    url, server = listener
    shutil.copytree(tiny_checkpoint.parent.parent, tmp_path / "shared_run")
    folder = tmp_path / "shared_run"
    ckpt = folder / "checkpoints" / tiny_checkpoint.name
    # the evaluation's own (default) store holds the training run
    own_uri, own, experiment = make_store(tmp_path / "mlruns" / "mlflow.db", "trainings")
    run_id = own.create_run(experiment, run_name="trained").info.run_id
    # the shared folder names another SQLite file and a server
    attacker_db = tmp_path / "attacker" / "mlflow.db"
    write_run_record(folder, run_id, f"sqlite:///{attacker_db}", "0")
    config = yaml.safe_load((folder / "config.yaml").read_text())
    config["logger"] = {**config.get("logger", {}), "name": "mlflow", "tracking_uri": url}
    (folder / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")

    command = [sys.executable, "-m", "empdg.evaluate", f"ckpt_path={ckpt}", f"paths.root_dir={tmp_path}",
               "evaluate.meaning=false"]  # fmt: skip
    done = subprocess.run(command, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    metrics = json.loads(done.stdout.strip().splitlines()[-1])
    assert f"linked to training run {run_id}" in done.stdout
    assert own.get_run(run_id).data.metrics["test/ppl"] == pytest.approx(metrics["ppl"])
    (child,) = own.search_runs([experiment], f"tags.`empdg.train_run_id` = '{run_id}'")
    assert child.data.tags["mlflow.parentRunId"] == run_id
    assert not attacker_db.exists() and not attacker_db.parent.exists()
    assert not connection_attempted(server)
    assert json.loads((folder / RUN_RECORD_FILE).read_text())["run_id"] == run_id
