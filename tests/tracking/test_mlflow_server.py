"""MLflow through a real server: a lab's set-up, on 127.0.0.1.

``mlflow server`` (SQLite backend, artifact serving on, temporary folders) takes a tiny training and an
evaluation of its checkpoint, both run as the commands a user types, each from its own working directory.
Those folders are then deleted, and from a third working directory everything is read back through the
server's API alone: params, metrics, the evaluation's link to the training run, and every artifact, whose
locations must be the server's proxy (``mlflow-artifacts:``), never a path of the client.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient
from tiny import REPO, tiny_overrides

from empdg.tracking.local_server import start_server
from empdg.tracking.resilient_logger import ClientArtifactsWarning, ResilientMLFlowLogger, build_logger
from empdg.tracking.store import client_side_artifact_uri, experiment_artifact_location


def run_command(args: list[str], cwd: Path) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8"}
    env.pop("MLFLOW_TRACKING_URI", None)
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def all_artifacts(client: MlflowClient, run_id: str, path: str | None = None) -> list[str]:
    files = []
    for info in client.list_artifacts(run_id, path):
        files += all_artifacts(client, run_id, info.path) if info.is_dir else [info.path]
    return files


def download_all(client: MlflowClient, run_id: str, target: Path) -> dict[str, Path]:
    """Every artifact of the run, downloaded one by one through the server; name -> local copy."""
    files = {}
    for name in all_artifacts(client, run_id):
        local = Path(client.download_artifacts(run_id, name, str(target)))
        assert local.is_file() and local.stat().st_size > 0, name
        files[name] = local
    return files


@pytest.mark.slow
def test_training_and_evaluation_through_a_server_read_back_from_elsewhere(tmp_path, mlflow_server) -> None:
    uri = mlflow_server.uri
    train_dir, eval_dir, reader_dir = (tmp_path / name for name in ("train", "evaluate", "reader"))
    for folder in (train_dir, eval_dir, reader_dir):
        folder.mkdir()

    # a tiny run through every phase (critics, adversarial), so every kind of artifact is logged
    run_command(
        [
            sys.executable, str(REPO / "train.py"),
            *tiny_overrides(train=2, valid=1, test=1),
            "training.phases.generator_pretrain=4",
            "training.phases.critic_pretrain=2",
            "training.phases.adversarial=2",
            "trainer.val_check_interval=4",
            "training.sample_generations=1",
            "logger=mlflow",
            f"logger.tracking_uri={uri}",
            "paths.output_dir=run",
        ],
        train_dir,
    )  # fmt: skip
    config_text = (train_dir / "run" / "config.yaml").read_text(encoding="utf-8")
    checkpoint = train_dir / "run" / "checkpoints" / "last.ckpt"
    eval_out = run_command(
        [
            sys.executable, "-m", "empdg.evaluate",
            f"ckpt_path={checkpoint}",
            f"logger.tracking_uri={uri}",
            "paths.output_dir=out",
            "evaluate.meaning=false",
        ],
        eval_dir,
    )  # fmt: skip
    assert "linked to training run" in eval_out
    # nothing of either run was written to a client-side store or artifact folder
    assert not (train_dir / "mlruns").exists() and not (eval_dir / "mlruns").exists()
    assert not (train_dir / "run" / "mlruns").exists() and not (eval_dir / "out" / "mlruns").exists()
    shutil.rmtree(train_dir)
    shutil.rmtree(eval_dir)  # from here on, only the server has them

    os.chdir(reader_dir)
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("quickstart")
    assert experiment.artifact_location.startswith("mlflow-artifacts:")
    runs = client.search_runs([experiment.experiment_id])
    evaluation = next(r for r in runs if r.data.tags.get("empdg.role") == "evaluation")
    training = next(r for r in runs if r.info.run_id != evaluation.info.run_id)
    assert len(runs) == 2
    for run in (training, evaluation):
        assert run.info.status == "FINISHED"
        assert run.info.artifact_uri.startswith("mlflow-artifacts:"), run.info.artifact_uri

    # params and metrics of the training run, and the evaluation's test metrics linked onto it
    assert training.data.params["model.emb_dim"] == "16"
    assert training.data.params["paths.output_dir"].endswith("run")
    assert {"train/loss", "val/ppl", "test/dist_2", "test/bleu_4"} <= set(training.data.metrics)
    assert evaluation.data.tags["mlflow.parentRunId"] == training.info.run_id
    assert evaluation.data.tags["empdg.train_run_id"] == training.info.run_id
    assert training.data.tags["empdg.eval_run.all"] == evaluation.info.run_id
    assert evaluation.data.params["evaluate.subset"] == "all"
    assert evaluation.data.metrics["dist_2"] == training.data.metrics["test/dist_2"]

    # every artifact of both runs, downloaded through the server
    trained = download_all(client, training.info.run_id, reader_dir / "training")
    assert {"config.yaml", "vocab.json", "plots/wasserstein.png", "critic_report.md", "critic_report.json"} <= set(
        trained
    ), sorted(trained)
    assert any(name.startswith("samples/step_") for name in trained), sorted(trained)
    assert trained["config.yaml"].read_text(encoding="utf-8") == config_text
    assert yaml.safe_load(config_text)["logger"]["tracking_uri"] == uri
    evaluated = download_all(client, evaluation.info.run_id, reader_dir / "evaluation")
    expected = {"predictions.jsonl", "pred_empdg.txt", "metrics.json", "metrics.md", "length_histogram.png"}
    assert {f"evaluation/{name}" for name in expected} <= set(evaluated), sorted(evaluated)
    assert "evaluation/emotion_confusion.png" in evaluated
    n_predictions = len(evaluated["evaluation/predictions.jsonl"].read_text(encoding="utf-8").splitlines())
    assert n_predictions == evaluation.data.metrics["n_examples"]

    # ... and they are in the server's artifact folder, where the server was told to keep them
    on_server = {p.name for p in mlflow_server.artifacts.rglob("*") if p.is_file()}
    assert {Path(name).name for name in [*trained, *evaluated]} <= on_server


def test_artifact_location_is_the_clients_only_for_local_stores(tmp_path) -> None:
    local = tmp_path / "mlruns" / "artifacts"
    assert experiment_artifact_location(f"sqlite:///{tmp_path}/mlflow.db", str(local)) == local.as_uri()
    assert experiment_artifact_location("sqlite:///x.db", "s3://bucket/prefix") == "s3://bucket/prefix"
    for server in ("http://127.0.0.1:5000", "HTTPS://tracking.lab"):
        assert experiment_artifact_location(server, str(local)) is None  # the server's default applies
    assert client_side_artifact_uri(local.as_uri()) and client_side_artifact_uri("/srv/mlflow/artifacts/1")
    assert not client_side_artifact_uri("mlflow-artifacts:/1/abc/artifacts")
    assert not client_side_artifact_uri("s3://bucket/1/abc/artifacts")


@pytest.mark.slow
def test_a_server_that_hands_out_client_paths_is_warned_about(tmp_path, monkeypatch) -> None:
    """``--no-serve-artifacts``: the server's artifact root is a path the CLIENT would write to."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # build_logger sets it process-wide: restored after
    server = start_server(tmp_path / "plain", serve_artifacts=False)
    try:
        config = {
            "name": "mlflow",
            "tracking_uri": server.uri,
            "artifact_location": str(tmp_path / "client_artifacts"),
            "experiment_name": "quickstart",
            "run_name": "plain",
            "http_max_retries": 0,
        }
        with pytest.warns(ClientArtifactsWarning, match="--serve-artifacts"):
            logger = build_logger(config, tmp_path / "run", {"model": "empdg"})
        assert isinstance(logger, ResilientMLFlowLogger) and logger.fallback is None
        experiment = MlflowClient(tracking_uri=server.uri).get_experiment(logger.experiment_id)
        assert experiment.artifact_location.startswith(str(server.artifacts))  # the server's, not ours
        logger.finalize("success")
    finally:
        server.stop()
    assert not (tmp_path / "client_artifacts").exists()
