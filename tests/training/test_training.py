"""Training through the real entry points: learning, run artefacts, exact resume, config errors, CLI."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from tiny import REPO, tiny_overrides

import empdg.training.run as train_cli
from empdg.config import compose
from empdg.data.datamodule import DialogueDataModule
from empdg.data.vocab import Vocab
from empdg.training.run import build_module, run_training
from empdg.training.settings import validate_config

TINY = [
    *tiny_overrides(32, mle_only=True),
    "data.eval_batch_size=32",
    "trainer.log_every_n_steps=1",
    "training.sample_generations=2",
    "training.sample_max_len=5",
]


def compose_cfg(tmp_path: Path, name: str, *overrides: str, logger: str = "none"):
    paths = [f"paths.root_dir={tmp_path}", f"paths.output_dir={tmp_path / name}"]
    return compose("train", [*TINY, f"logger={logger}", *paths, *overrides])


class StepRecorder(pl.Callback):
    """Per-batch training loss keyed by the number of optimizer steps done, and step bookkeeping."""

    def __init__(self) -> None:
        self.losses: dict[int, float] = {}
        self.batches = 0
        self.steps_at_batch: list[int] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.batches += 1
        self.steps_at_batch.append(trainer.global_step)
        loss = trainer.callback_metrics.get("train/loss")
        if loss is not None:
            self.losses[trainer.global_step] = float(loss)


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> StepRecorder:
    """Add a StepRecorder to the trainer that ``run_training`` builds."""
    rec = StepRecorder()
    original = train_cli.build_trainer

    def build_trainer(cfg, logger, callbacks, output_dir):
        return original(cfg, logger, [*callbacks, rec], output_dir)

    monkeypatch.setattr(train_cli, "build_trainer", build_trainer)
    return rec


def _csv_losses(run_dir: Path) -> dict[int, float]:
    rows = csv.DictReader(next(run_dir.rglob("metrics.csv")).open())
    return {int(row["step"]): float(row["train/loss"]) for row in rows if row.get("train/loss")}


# -- (1) learning ------------------------------------------------------------------------------
def test_loss_goes_down_on_a_repeated_batch(tmp_path: Path) -> None:
    cfg = compose_cfg(tmp_path, "run")
    datamodule = DialogueDataModule(dict(cfg.data), seed=0)
    datamodule.setup("fit")
    module = build_module(cfg, datamodule)
    module.train()
    batch = next(iter(datamodule.train_dataloader()))
    optimizer = torch.optim.Adam(module.generator.parameters(), lr=3e-3)
    torch.manual_seed(0)
    initial = {k: float(v) for k, v in module.generator_losses(batch).items() if k in ("nll", "emotion_ce")}
    losses = []
    for _ in range(25):
        out = module.generator_losses(batch)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        losses.append(float(out["loss"]))
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.6 * losses[0]
    assert all(later <= earlier + 0.5 for earlier, later in zip(losses, losses[1:]))  # no divergence
    final = module.generator_losses(batch)
    assert float(final["nll"]) < 0.6 * initial["nll"]
    assert float(final["emotion_ce"]) < 0.6 * initial["emotion_ce"]


# -- (2) a run and its files ---------------------------------------------------------------------
def test_run_training_writes_config_vocab_and_checkpoint(tmp_path: Path) -> None:
    cfg = compose_cfg(
        tmp_path, "run", "training.phases.generator_pretrain=4", "trainer.val_check_interval=2", logger="csv"
    )
    metrics = run_training(cfg)
    run = tmp_path / "run"
    assert (run / "config.yaml").is_file()
    assert "generator_pretrain: 4" in (run / "config.yaml").read_text()
    vocab = Vocab.load(run / "vocab.json")
    assert len(vocab) > 8
    last = run / "checkpoints" / "last.ckpt"
    assert last.is_file()
    checkpoint = torch.load(last, map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == 4
    assert checkpoint["hyper_parameters"]["vocab_tokens"] == vocab.tokens
    assert "val/ppl" in metrics and "val/loss" in metrics and "val/emotion_acc" in metrics
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
    assert (tmp_path / ".cache" / "empdg").is_dir()  # the cache went under paths.root_dir


# -- (3) exact resume -----------------------------------------------------------------------------
def test_resume_continues_exactly(tmp_path: Path, recorder: StepRecorder) -> None:
    n = 5
    # dropout makes every step draw random numbers: the RNG state must be restored too
    common = ("trainer.val_check_interval=3", "model.dropout=0.1", "model.input_dropout=0.1")

    run_training(compose_cfg(tmp_path, "A", f"training.phases.generator_pretrain={2 * n}", *common))
    a = dict(recorder.losses)
    recorder.losses.clear()
    run_training(compose_cfg(tmp_path, "B", f"training.phases.generator_pretrain={n}", *common))
    b = dict(recorder.losses)
    recorder.losses.clear()
    ckpt = tmp_path / "B" / "checkpoints" / "last.ckpt"
    assert torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"] == n
    run_training(
        compose_cfg(tmp_path, "C", f"training.phases.generator_pretrain={2 * n}", f"ckpt_path={ckpt}", *common)
    )
    c = dict(recorder.losses)

    assert sorted(a) == list(range(1, 2 * n + 1))
    assert all(a[s] == b[s] for s in range(1, n + 1))  # same seed, same start
    assert sorted(c) == list(range(n + 1, 2 * n + 1))  # C trains only the remaining steps
    for step in range(n + 1, 2 * n + 1):
        assert c[step] == a[step], f"step {step}: resumed loss {c[step]} != uninterrupted {a[step]}"
    # and it ends with exactly the same weights
    final_a = torch.load(tmp_path / "A" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    final_c = torch.load(tmp_path / "C" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert final_c["global_step"] == final_a["global_step"] == 2 * n
    for key, value in final_a["state_dict"].items():
        assert torch.equal(value, final_c["state_dict"][key]), key


def test_resumed_run_logs_metrics_at_the_same_steps(tmp_path: Path) -> None:
    n = 4
    common = ("trainer.val_check_interval=3",)
    run_training(compose_cfg(tmp_path, "A", f"training.phases.generator_pretrain={2 * n}", *common, logger="csv"))
    run_training(compose_cfg(tmp_path, "B", f"training.phases.generator_pretrain={n}", *common, logger="csv"))
    ckpt = tmp_path / "B" / "checkpoints" / "last.ckpt"
    run_training(
        compose_cfg(
            tmp_path, "C", f"training.phases.generator_pretrain={2 * n}", f"ckpt_path={ckpt}", *common, logger="csv"
        )
    )
    a, b, c = (_csv_losses(tmp_path / name) for name in "ABC")
    assert not set(b) & set(c), "a step is logged by both the interrupted and the resumed run"
    assert c == {step: loss for step, loss in a.items() if step not in b}


# -- (4) invalid configurations stop before training -------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("ckpt_path=/nonexistent/last.ckpt",), "ckpt_path=/nonexistent/last.ckpt does not exist"),
        (("training.accumulate_grad_batches=0",), "training.accumulate_grad_batches"),
        (("training.on_nonfinite=ignore",), "training.on_nonfinite"),
        (("model.tie_embeddings=true", "model.emb_dim=16"), "model.tie_embeddings"),
        (("model.num_heads=3",), "model.num_heads"),
        (("model.init_from=/nonexistent/model.ckpt",), "model.init_from"),
    ],
)
def test_invalid_combinations_stop_before_training(tmp_path: Path, overrides: tuple[str, ...], message: str) -> None:
    cfg = compose_cfg(tmp_path, "run", "training.phases.generator_pretrain=2", *overrides)
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        run_training(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize(
    ("overrides", "key", "why"),
    [
        (("adversarial.n_critic=0", "adversarial.g_steps=0"), "adversarial.n_critic + adversarial.g_steps", "end"),
        (("adversarial.n_critic=0",), "adversarial.n_critic=0", "critics\\s+would never be trained"),
        (("adversarial.g_steps=-1",), "adversarial.g_steps=-1", ">= 0"),
        (("adversarial.n_critic=-2",), "adversarial.n_critic=-2", ">= 0"),
        (("adversarial.gp_lambda=-1.0",), "adversarial.gp_lambda=-1.0", ">= 0"),
        (("adversarial.w_adv=-0.5",), "adversarial.w_adv=-0.5", ">= 0"),
        (("training.phases.critic_pretrain=-3",), "training.phases.critic_pretrain=-3", ">= 0"),
        (("training.phases.adversarial=-1",), "training.phases.adversarial=-1", ">= 0"),
        (("callbacks.progress.every_n_steps=-1",), "callbacks.progress.every_n_steps=-1", ">= 0"),
        (("seed=abc",), "seed=abc", "whole number from 0 to 4294967295"),
        (("seed=-1",), "seed=-1", "whole number"),
        (("seed=4294967296",), "seed=4294967296", "whole number"),
        (("seed=1.5",), "seed=1.5", "whole number"),
        (("seed=null",), "seed=None", "whole number"),
        (("trainer.val_check_interval=0",), "trainer.val_check_interval=0", "> 0"),
        (("callbacks.checkpoint.mode=up",), "callbacks.checkpoint.mode='up'", "min or max"),
        (("callbacks.checkpoint.save_top_k=-2",), "callbacks.checkpoint.save_top_k=-2", ">= -1"),
        (("callbacks.checkpoint.every_n_train_steps=-1",), "callbacks.checkpoint.every_n_train_steps=-1", ">= 0"),
        (("logger=csv", "logger.name=tensorboard"), "logger.name='tensorboard' is unknown", "logger=mlflow"),
    ],
)
def test_impossible_adversarial_settings_are_rejected_naming_the_key(compose_train, overrides, key, why):
    cfg = compose_train("training.phases.adversarial=3", *overrides)
    with pytest.raises(ValueError, match=re.escape(key) + r".*" + why):
        validate_config(cfg)


def test_every_seed_numpy_accepts_is_fine(compose_train):
    for seed in (0, 4294967295):
        validate_config(compose_train(f"seed={seed}"))


def test_n_critic_zero_is_fine_without_critics_or_without_an_adversarial_phase(compose_train):
    validate_config(compose_train("adversarial.n_critic=0", "adversarial=none"))
    validate_config(compose_train("adversarial.n_critic=0", "training.phases.adversarial=0"))


def test_rejected_before_any_data_is_read(compose_train, tmp_path):
    cfg = compose_train("training.phases.generator_pretrain=2", "adversarial.gp_lambda=-1")
    with pytest.raises(ValueError, match=r"adversarial\.gp_lambda"):
        run_training(cfg)
    assert not (tmp_path / ".cache").exists()


# -- (5) the command line --------------------------------------------------------------------------
def _train_py(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        [sys.executable, str(REPO / "train.py"), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cfg_job_prints_the_composed_config(tmp_path: Path) -> None:
    result = _train_py(tmp_path, "--cfg", "job", "experiment=quickstart", "model.hidden_dim=48")
    assert result.returncode == 0, result.stderr
    assert "experiment_name: quickstart" in result.stdout
    assert "hidden_dim: 48" in result.stdout
    assert "generator_pretrain:" in result.stdout
    assert not (tmp_path / "outputs").exists()  # nothing was trained


def test_unknown_key_fails_with_one_error_line(tmp_path: Path) -> None:
    result = _train_py(tmp_path, "experiment=quickstart", "training.no_such_key=1")
    assert result.returncode == 2
    assert "error: unknown key training.no_such_key" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / ".cache").exists()  # it stopped before touching data


# -- (6) gradient accumulation ---------------------------------------------------------------------
@pytest.mark.parametrize("accumulate", [1, 2])
def test_gradient_accumulation_steps_the_optimizer_every_k_batches(
    tmp_path: Path, recorder: StepRecorder, accumulate: int
) -> None:
    steps = 3
    cfg = compose_cfg(
        tmp_path,
        "run",
        f"training.phases.generator_pretrain={steps}",
        f"training.accumulate_grad_batches={accumulate}",
        "trainer.val_check_interval=100",
    )
    run_training(cfg)
    assert recorder.batches == accumulate * steps
    assert recorder.steps_at_batch == [(i + 1) // accumulate for i in range(accumulate * steps)]
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == steps


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.precision=bogus", "trainer: Precision 'bogus' is invalid"),
        ("trainer.devices=0", "trainer: `Trainer(devices=0)` value is not a valid input"),
        ("trainer.val_check_interval=0.5", "trainer: `val_check_interval` should be an integer"),
    ],
)
def test_settings_lightning_refuses_are_user_errors_naming_the_section(compose_train, tmp_path, override, message):
    from empdg.errors import ConfigError
    from empdg.training.run import build_trainer

    with pytest.raises(ConfigError, match=re.escape(message)):
        build_trainer(compose_train(override), None, [], tmp_path / "run")


def test_a_monitored_metric_validation_never_logs_is_named(compose_train):
    from empdg.errors import ConfigError

    cfg = compose_train("training.phases.generator_pretrain=2", "callbacks.checkpoint.monitor=val/bleu")
    with pytest.raises(ConfigError, match=r"callbacks\.checkpoint\.monitor=val/bleu: .*could not find the monitored"):
        run_training(cfg)
