"""The quickstart from a user's point of view: train.py in an empty folder, results in MLflow."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from tiny import REPO, tiny_overrides

SMALL = [
    *tiny_overrides(32, mle_only=True),
    "training.phases.generator_pretrain=8",
    "trainer.val_check_interval=4",
    "trainer.log_every_n_steps=1",
    "training.sample_generations=3",
    "training.sample_max_len=6",
]


def train(cwd: Path, *overrides: str, timeout: int = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    result = subprocess.run(
        [sys.executable, str(REPO / "train.py"), *overrides],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


def _only_run(tracking_uri: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    experiments = [e for e in client.search_experiments() if e.name == "quickstart"]
    assert len(experiments) == 1
    runs = client.search_runs([experiments[0].experiment_id])
    assert len(runs) == 1
    return client, runs[0]


def _artifacts(client, run_id: str, path: str | None = None) -> list[str]:
    found = []
    for item in client.list_artifacts(run_id, path):
        found.extend(_artifacts(client, run_id, item.path) if item.is_dir else [item.path])
    return found


@pytest.mark.slow
def test_quickstart_logs_an_mlflow_run(tmp_path: Path) -> None:
    result = train(tmp_path, *SMALL)
    db = tmp_path / "mlruns" / "mlflow.db"
    assert db.is_file()
    client, run = _only_run(f"sqlite:///{db}")
    assert run.info.status == "FINISHED"

    metrics = run.data.metrics
    for key in ("train/loss", "train/nll", "train/emotion_ce", "val/loss", "val/ppl", "val/emotion_acc"):
        assert key in metrics, key
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) >= 8
    params = run.data.params
    assert params["model.hidden_dim"] == "32"
    assert params["training.phases.generator_pretrain"] == "8"
    assert params["data.name"] == "builtin"
    assert params["config_version"] == "2"  # which keys the params are in (empdg.config.migration reads them)
    tags = run.data.tags
    assert re.fullmatch(r"[0-9a-f]{40}|unknown", tags["git_commit"])
    assert tags["dataset"].startswith("builtin:builtin-")

    artifacts = _artifacts(client, run.info.run_id)
    assert "config.yaml" in artifacts
    assert "vocab.json" in artifacts
    samples = [a for a in artifacts if a.startswith("samples/") and a.endswith(".txt")]
    assert samples

    # the console names the run and shows replies
    assert run.info.run_id in result.stdout
    assert "reply:" in result.stdout and "gold:" in result.stdout


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_unreachable_tracking_store_falls_back_to_a_local_one(tmp_path: Path) -> None:
    uri = f"http://127.0.0.1:{_closed_port()}"
    run_dir = tmp_path / "run"
    result = train(
        tmp_path, *SMALL, "training.phases.generator_pretrain=2", f"logger.tracking_uri={uri}",
        f"paths.output_dir={run_dir}",
    )
    assert "unreachable" in result.stderr
    assert uri in result.stderr
    fallback = run_dir / "mlruns" / "mlflow.db"
    assert fallback.is_file()
    assert str(fallback) in result.stdout  # the summary says where the results went
    client, run = _only_run(f"sqlite:///{fallback}")
    assert "val/ppl" in run.data.metrics
    assert "config.yaml" in _artifacts(client, run.info.run_id)


@pytest.mark.slow
@pytest.mark.real_data
def test_real_sample_learns_emotions_above_chance(tmp_path: Path, real_sample_dir: Path) -> None:
    run_dir = tmp_path / "run"
    train(
        tmp_path,
        "experiment=quickstart",
        "data=empathetic_dialogues",
        f"data.root={real_sample_dir}",
        "data.download=false",
        "data.vocab.min_count=3",
        "data.batch_size=32",
        "data.max_context_len=64",
        "data.max_target_len=20",
        "+data.limit_examples.valid=256",
        "model.emb_dim=64",
        "model.hidden_dim=64",
        "model.attn_dim=32",
        "model.ff_dim=64",
        "optim.lr=3e-3",
        "training.phases.generator_pretrain=150",
        "++training.phases.critic_pretrain=0",
        "++training.phases.adversarial=0",
        "trainer.val_check_interval=150",
        "trainer.enable_progress_bar=false",
        "training.sample_generations=0",
        "logger=csv",
        f"paths.output_dir={run_dir}",
        timeout=300,
    )
    metrics_csv = next(run_dir.rglob("metrics.csv")).read_text().splitlines()
    header = metrics_csv[0].split(",")
    column = header.index("val/emotion_acc")
    accuracies = [float(row.split(",")[column]) for row in metrics_csv[1:] if row.split(",")[column]]
    assert accuracies
    print(f"val/emotion_acc: {accuracies}")
    assert accuracies[-1] > 2 / 32, f"val/emotion_acc={accuracies[-1]:.3f} is not above chance (1/32)"
