"""Registering a training run's checkpoint as an MLflow model, loading it, and serving it over REST.

A real ``mlflow models serve`` (``--env-manager local``) on 127.0.0.1, a temporary SQLite store: no mocks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from tiny import tiny_overrides

from empdg.data.conversation import EMOTIONS
from empdg.errors import UserError
from empdg.serving.model_server import serving_model

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8", "MLFLOW_DISABLE_TELEMETRY": "true"}


def make_training_run(store: str, run_folder: Path | str) -> str:
    """A finished MLflow run tagged with its run folder, as training leaves one (the tiny fixture logs to none)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("empdg")
    if experiment is None:
        experiment_id = client.create_experiment("empdg", artifact_location=str(Path(store[10:]).parent / "artifacts"))
    else:
        experiment_id = experiment.experiment_id
    run = client.create_run(experiment_id, tags={"empdg.run_folder": str(run_folder)}, run_name="tiny")
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def register(cwd: Path, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "empdg.register", *overrides],
        cwd=cwd, env=ENV, capture_output=True, text=True, encoding="utf-8", timeout=180,
    )  # fmt: skip


def check_answer(answer: dict) -> None:
    assert isinstance(answer["reply"], str) and answer["reply"].strip()
    assert answer["emotion"] in EMOTIONS
    top = answer["top_emotions"]
    assert [t["emotion"] for t in top][0] == answer["emotion"] and len(top) == 3
    assert all(t["emotion"] in EMOTIONS for t in top) and len({t["emotion"] for t in top}) == 3
    probabilities = [t["probability"] for t in top]
    assert probabilities == sorted(probabilities, reverse=True)
    assert all(0 < p <= 1 for p in probabilities) and sum(probabilities) <= 1 + 1e-6


def post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


@pytest.fixture(scope="module")
def registered(tiny_checkpoint, tmp_path_factory) -> dict:
    """The tiny checkpoint's run registered as ``tiny`` version 1 in a temporary SQLite store."""
    root = tmp_path_factory.mktemp("registry")
    store = f"sqlite:///{root / 'mlflow.db'}"
    run_id = make_training_run(store, tiny_checkpoint.parent.parent)
    result = register(root, f"run_id={run_id}", "name=tiny", f"tracking_uri={store}")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return {"root": root, "store": store, "made_run": run_id, **json.loads(result.stdout.strip().splitlines()[-1])}


@pytest.mark.slow
def test_register_load_and_serve(registered, tiny_checkpoint, monkeypatch):
    import mlflow
    import pandas as pd
    from mlflow.tracking import MlflowClient

    store = registered["store"]
    assert registered["model_uri"] == "models:/tiny/1" and registered["version"] == "1"
    assert registered["training_run_id"] == registered["made_run"] != registered["run_id"]
    assert Path(registered["checkpoint"]).parent == tiny_checkpoint.parent  # the run's best (or last) checkpoint
    client = MlflowClient(tracking_uri=store, registry_uri=store)
    assert client.get_model_version("tiny", "1").run_id == registered["run_id"]
    child = client.get_run(registered["run_id"])  # the model's own run, a child of the training run
    assert child.data.tags["mlflow.parentRunId"] == registered["made_run"]

    # models:/ resolves through MLflow's process-wide URIs; Lightning's MLFlowLogger sets them in every in-process
    # training of earlier tests (mlflow.set_tracking_uri), so unset them for this test (monkeypatch restores them)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setattr(mlflow.tracking._tracking_service.utils, "_tracking_uri", None)
    monkeypatch.setattr(mlflow.tracking._model_registry.utils, "_registry_uri", None)
    model = mlflow.pyfunc.load_model("models:/tiny/1")
    signature = model.metadata.signature
    assert [c.name for c in signature.inputs.inputs] == ["history"]
    assert {"strategy", "beam_size", "max_len", "seed"} <= {p.name for p in signature.params.params}
    histories = pd.DataFrame([{"history": ["my dog died yesterday ."]}, {"history": ["i won !", "wow", "yes !"]}])
    answers = model.predict(histories)
    assert len(answers) == 2
    for answer in answers:
        check_answer(answer)
    beam = model.predict(histories.iloc[:1], params={"strategy": "beam", "beam_size": 2, "max_len": 5})
    check_answer(beam[0])
    assert len(beam[0]["reply"].split()) <= 5 or beam[0]["fallback"]
    with pytest.raises(Exception, match="odd number"):  # a history must end with the user's turn
        model.predict(pd.DataFrame([{"history": ["hi", "hello"]}]))

    with serving_model("models:/tiny/1", store, registered["root"], ENV) as server:
        status, body = post(server.invocations, {"dataframe_records": [{"history": ["i lost my job today ."]}]})
        assert status == 200, body
        assert len(body["predictions"]) == 1
        check_answer(body["predictions"][0])
        bad_setting = {"dataframe_records": [{"history": ["hi"]}], "params": {"strategy": "nonsense"}}
        status, body = post(server.invocations, bad_setting)
        assert status == 400 and "strategy" in json.dumps(body)  # a bad setting is the client's error
        status, body = post(server.invocations, {"dataframe_records": [{"history": ["hi", "hello"]}]})
        assert status == 400 and "odd number" in json.dumps(body)  # the history must end with the user's turn
        status, body = post(server.invocations, {"dataframe_records": [{"text": "hi"}]})
        assert status == 400 and "history" in json.dumps(body)  # the signature requires a history
        status, _ = post(server.invocations, {"dataframe_records": [{"history": ["my secret: quixotic zebrafish"]}]})
        assert status == 200
        status, _ = post(server.invocations, {"dataframe_records": [{"history": ["quixotic zebrafish", "x"]}]})
        assert status == 400
    # nothing about a conversation in the server's log, answered or refused (tests/serving/test_privacy.py: files)
    assert "zebrafish" not in (registered["root"] / "model_server.log").read_text(encoding="utf-8", errors="replace")


def test_register_unknown_run_is_one_error_line(tmp_path):
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    make_training_run(store, tmp_path)  # the store exists; the asked run does not
    result = register(tmp_path, "run_id=0123456789abcdef", f"tracking_uri={store}")
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: run_id=0123456789abcdef is not a run of"), lines
    assert "tracking_uri=" in lines[0]


def test_register_without_checkpoint_or_store_names_the_fix(tmp_path):
    from empdg.serving.registry import register_run

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    folder = tmp_path / "run"
    (folder / "checkpoints").mkdir(parents=True)
    run_id = make_training_run(store, folder)
    with pytest.raises(UserError, match="has no best or last checkpoint .*pass ckpt_path=PATH"):
        register_run(run_id, "tiny", store)
    with pytest.raises(UserError, match="has no last checkpoint"):
        register_run(run_id, "tiny", store, checkpoint="last")
    with pytest.raises(UserError, match="there is no MLflow store at .*pass tracking_uri="):
        register_run(run_id, "tiny", f"sqlite:///{tmp_path / 'absent.db'}")
    assert not (tmp_path / "absent.db").exists()  # looking never creates a store


def test_choose_checkpoint_prefers_best_then_last(tmp_path):
    from empdg.serving.registry import choose_checkpoint

    folder = tmp_path / "checkpoints"
    folder.mkdir()
    assert choose_checkpoint(tmp_path) is None
    (folder / "last.ckpt").write_bytes(b"")
    assert choose_checkpoint(tmp_path) == folder / "last.ckpt"
    assert choose_checkpoint(tmp_path, "best") is None
    (folder / "best-4.ckpt").write_bytes(b"")
    assert choose_checkpoint(tmp_path) == folder / "best-4.ckpt"
    assert choose_checkpoint(tmp_path, "last") == folder / "last.ckpt"
    with pytest.raises(UserError, match="checkpoint='newest' must be one of"):
        choose_checkpoint(tmp_path, "newest")


@pytest.mark.slow
def test_train_flag_registers_the_run(tmp_path):
    """``logger.register_model=NAME``: training ends by registering its run (found by its mlflow_run.json)."""
    store = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    result = subprocess.run(
        [sys.executable, "-m", "empdg.train", *tiny_overrides(train=2, test=1, mle_only=True),
         "training.phases.generator_pretrain=2", "trainer.val_check_interval=2", "training.sample_generations=0",
         f"paths.root_dir={tmp_path}", "logger.register_model=flagged"],
        cwd=tmp_path, env=ENV, capture_output=True, text=True, encoding="utf-8", timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    line = next(x for x in result.stdout.splitlines() if x.startswith("registered model: "))
    assert line.startswith("registered model: models:/flagged/1 ")
    from mlflow.tracking import MlflowClient

    record = json.loads(next(tmp_path.glob("outputs/**/mlflow_run.json")).read_text())
    client = MlflowClient(tracking_uri=store, registry_uri=store)
    version = client.get_model_version("flagged", "1")
    assert client.get_run(version.run_id).data.tags["mlflow.parentRunId"] == record["run_id"]
