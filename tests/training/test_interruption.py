"""Training stopped by a signal: a checkpoint, exit status 128 + signal, an exact resume; orphaned MLflow runs."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from tiny import tiny_overrides

import empdg.training.run as train_cli
from empdg.config import compose
from empdg.tracking.run_record import read_run_record
from empdg.training.interruption import TrainingInterrupted
from empdg.training.run import run_training

TINY = [*tiny_overrides(32, mle_only=True), "trainer.val_check_interval=3", "model.dropout=0.1"]


def compose_cfg(tmp_path: Path, name: str, *overrides: str, logger: str = "none"):
    paths = [f"paths.root_dir={tmp_path}", f"paths.output_dir={tmp_path / name}"]
    return compose("train", [*TINY, "training.sample_generations=0", f"logger={logger}", *paths, *overrides])


class Recorder(pl.Callback):
    """Training loss per optimizer step; sends ``signum`` to this process after step ``at``."""

    def __init__(self, signum: int | None = None, at: int = 0) -> None:
        self.losses: dict[int, float] = {}
        self.signum, self.at = signum, at

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses[trainer.global_step] = float(trainer.callback_metrics["train/loss"])
        if self.signum is not None and trainer.global_step == self.at:
            os.kill(os.getpid(), self.signum)


@pytest.fixture
def with_callback(monkeypatch: pytest.MonkeyPatch):
    """``with_callback(cb)``: the trainer that ``run_training`` builds next gets ``cb`` too."""

    original = train_cli.build_trainer

    def add(callback: pl.Callback) -> pl.Callback:
        monkeypatch.setattr(train_cli, "build_trainer", lambda c, lg, cbs, out: original(c, lg, [*cbs, callback], out))
        return callback

    return add


def test_sigterm_saves_a_checkpoint_exits_143_and_the_resume_is_exact(tmp_path, with_callback) -> None:
    n = 4
    full = with_callback(Recorder())
    run_training(compose_cfg(tmp_path, "A", f"training.phases.generator_pretrain={2 * n}"))
    stopped = with_callback(Recorder(signal.SIGTERM, at=n))
    with pytest.raises(TrainingInterrupted) as raised:
        run_training(compose_cfg(tmp_path, "B", f"training.phases.generator_pretrain={2 * n}"))
    assert raised.value.code == 143
    ckpt = tmp_path / "B" / "checkpoints" / "last.ckpt"
    assert raised.value.checkpoint == ckpt
    assert torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"] == n  # the batch under way, done
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handlers are given back
    resumed = with_callback(Recorder())
    run_training(compose_cfg(tmp_path, "C", f"training.phases.generator_pretrain={2 * n}", f"ckpt_path={ckpt}"))
    assert stopped.losses == {s: full.losses[s] for s in range(1, n + 1)}
    assert resumed.losses == {s: full.losses[s] for s in range(n + 1, 2 * n + 1)}  # bit-identical
    final_a = torch.load(tmp_path / "A" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    final_c = torch.load(tmp_path / "C" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    for key, value in final_a["state_dict"].items():
        assert torch.equal(value, final_c["state_dict"][key]), key


def test_sigint_stops_like_sigterm_with_status_130(tmp_path, with_callback) -> None:
    with_callback(Recorder(signal.SIGINT, at=2))
    with pytest.raises(TrainingInterrupted) as raised:
        run_training(compose_cfg(tmp_path, "A", "training.phases.generator_pretrain=50"))
    assert raised.value.code == 130
    ckpt = torch.load(tmp_path / "A" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 2
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def _mlflow_status(run_folder: Path) -> str:
    from mlflow.tracking import MlflowClient

    record = read_run_record(run_folder)
    return MlflowClient(tracking_uri=record["tracking_uri"]).get_run(record["run_id"]).info.status


def test_sigterm_marks_the_mlflow_run_killed(tmp_path, with_callback) -> None:
    with_callback(Recorder(signal.SIGTERM, at=1))
    with pytest.raises(TrainingInterrupted):
        run_training(compose_cfg(tmp_path, "A", "training.phases.generator_pretrain=50", logger="mlflow"))
    assert _mlflow_status(tmp_path / "A") == "KILLED"


def test_a_resume_closes_the_run_a_killed_process_left_running(tmp_path, capsys) -> None:
    from mlflow.tracking import MlflowClient

    run_training(compose_cfg(tmp_path, "A", "training.phases.generator_pretrain=2", logger="mlflow"))
    old = read_run_record(tmp_path / "A")
    client = MlflowClient(tracking_uri=old["tracking_uri"])
    # what SIGKILL leaves: nothing ended the run
    client.update_run(old["run_id"], status="RUNNING")
    ckpt = tmp_path / "A" / "checkpoints" / "last.ckpt"
    capsys.readouterr()
    run_training(
        compose_cfg(tmp_path, "B", "training.phases.generator_pretrain=3", f"ckpt_path={ckpt}", logger="mlflow")
    )
    assert client.get_run(old["run_id"]).info.status == "KILLED"
    new = read_run_record(tmp_path / "B")
    assert new["run_id"] != old["run_id"] and _mlflow_status(tmp_path / "B") == "FINISHED"
    summary = capsys.readouterr().out.split("=== empdg run finished ===")[1]
    assert f"resumed from {ckpt}" in summary
    assert f"closed its MLflow run {old['run_id']}" in summary
