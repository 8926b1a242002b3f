"""Training on the GPU: every model against both critics in fp32 and mixed precision, checkpoints that cross
between the GPU and the CPU, the served model, and DDP under ``torchrun`` on one GPU.

Tiny configs (tests/tiny.py), a few updates each: they check that the code runs on the device and that the
phases do their updates, not what the models learn.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from gpu.gpu_helpers import accelerator_overrides
from tiny import REPO, tiny_hf_overrides

from empdg.config import CONFIG_DIR

pytestmark = [pytest.mark.gpu, pytest.mark.slow]

MODELS = sorted(path.stem for path in (CONFIG_DIR / "model").glob("*.yaml"))
#: 16-mixed (the gradient scaler through the gradient penalty's double backward) on a word-level and a pretrained model
FP16_MODELS = ("empdg", "moel", "hf_seq2seq")
PHASES = {"generator_pretrain": 2, "critic_pretrain": 2, "adversarial": 1}
#: every optimizer.step() counts: a critics' update per critic-pretraining step, 1 critic + 1 generator per cycle
OPTIMIZER_STEPS = 2 + 2 + 1 * (1 + 1)
SHORT = [
    *[f"training.phases.{name}={n}" for name, n in PHASES.items()],
    "adversarial=empdg",  # both critics, also for the baselines whose config drops them
    "adversarial.n_critic=1",
    "adversarial.g_steps=1",
    "trainer.val_check_interval=4",
    "training.sample_generations=2",  # validation also decodes on the device
    "training.sample_max_len=5",
]


class FitReport(pl.Callback):
    """What the fit did: where the weights were, the updates per phase, the last losses' finiteness."""

    def __init__(self) -> None:
        self.seen: dict = {}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.seen["device"] = next(pl_module.parameters()).device.type

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.seen["global_step"] = trainer.global_step
        self.seen["phases_done"] = dict(pl_module.phases.done)
        self.seen["finite"] = all(bool(torch.isfinite(p).all()) for p in pl_module.parameters())


def _train(compose_train, device: torch.device, *overrides: str, tiny: bool = True, run: str = "run") -> dict:
    from empdg.training.run import run_training

    report = FitReport()
    cfg = compose_train(*SHORT, *accelerator_overrides(device), *overrides, tiny=tiny, run=run)
    metrics = run_training(cfg, extra_callbacks=[report])
    return {"metrics": metrics, **report.seen, "output_dir": Path(cfg.paths.output_dir)}


def _model_overrides(model: str, tiny_pretrained: dict[str, Path]) -> tuple[list[str], bool]:
    """(overrides, whether the tiny word-level overrides apply) for one model config."""
    if model.startswith("hf_"):
        family = "seq2seq" if model == "hf_seq2seq" else "causal"
        return [*tiny_hf_overrides(tiny_pretrained[family]), f"model={model}", "logger=none"], False
    return [f"model={model}"], True


def _precision_cases() -> list:
    cases = [pytest.param(m, p, id=f"{m}-{p}") for m in MODELS for p in ("32-true", "bf16-mixed")]
    return cases + [pytest.param(m, "16-mixed", id=f"{m}-16-mixed") for m in FP16_MODELS if m in MODELS]


@pytest.mark.parametrize(("model", "precision"), _precision_cases())
def test_every_model_trains_against_both_critics(
    device: torch.device, compose_train, tiny_pretrained, model: str, precision: str
) -> None:
    if precision == "16-mixed" and device.type != "cuda":
        pytest.skip("16-mixed (float16 with a gradient scaler) is a CUDA precision")
    overrides, tiny = _model_overrides(model, tiny_pretrained)
    fit = _train(compose_train, device, *overrides, f"trainer.precision={precision}", tiny=tiny)
    assert fit["device"] == device.type
    assert fit["phases_done"] == PHASES  # the critics trained and the game was played
    assert fit["global_step"] == OPTIMIZER_STEPS
    assert fit["finite"]
    ppl = "val/subword_ppl" if model.startswith("hf_") else "val/ppl"  # a subword model's perplexity is per token
    assert math.isfinite(fit["metrics"][ppl])


def _pyfunc_model(checkpoint: Path, folder: Path):
    """The served model (MLflow pyfunc) of ``checkpoint``, loaded as ``mlflow models serve`` loads it."""
    from empdg.models.decoding import DecodingConfig
    from empdg.serving.pyfunc_model import ARTIFACT, EmpDGChatModel
    from empdg.serving.registry import _stage, chat_defaults

    decoding = dataclasses.asdict(DecodingConfig(strategy="greedy", max_len=8))
    _stage(checkpoint, checkpoint.parent.parent, folder, decoding, chat_defaults())
    model = EmpDGChatModel()
    model.load_context(SimpleNamespace(artifacts={ARTIFACT: str(folder)}))
    return model


def _check_answers(answers: list[dict]) -> None:
    from empdg.data.conversation import EMOTIONS

    assert len(answers) == 2
    for answer in answers:
        assert isinstance(answer["reply"], str) and answer["reply"].strip()
        assert answer["emotion"] in EMOTIONS


HISTORIES = [{"history": ["my dog died yesterday ."]}, {"history": ["i won !", "wow", "yes !"]}]


@pytest.mark.cpu_dry_run
def test_checkpoint_trained_on_the_device_evaluates_chats_and_serves_on_cpu(
    device: torch.device, compose_train, tmp_path: Path
) -> None:
    from empdg.config import compose
    from empdg.evaluation.pipeline import run_evaluation
    from empdg.serving.terminal import build_session

    fit = _train(compose_train, device)
    checkpoint = fit["output_dir"] / "checkpoints" / "last.ckpt"
    assert checkpoint.is_file()
    metrics = {}
    for where in ("cpu", device.type):  # evaluate.device: the CPU's perplexity on the device too
        cfg = compose("evaluate", [f"ckpt_path={checkpoint}", "logger=none", f"paths.root_dir={tmp_path}",
                                   f"paths.output_dir={tmp_path / ('eval-' + where)}", "evaluate.meaning=false",
                                   f"evaluate.device={where}"])  # fmt: skip
        metrics[where] = run_evaluation(cfg)
    assert metrics["cpu"]["n_examples"] > 0 and math.isfinite(metrics["cpu"]["ppl"])
    assert metrics[device.type]["n_examples"] == metrics["cpu"]["n_examples"]
    assert metrics[device.type]["ppl"] == pytest.approx(metrics["cpu"]["ppl"], rel=1e-4)
    for where in ("cpu", device.type):  # the terminal chat, on chat.device
        session = build_session(compose("chat", [f"ckpt_path={checkpoint}", "decoding.max_len=8",
                                                 f"chat.device={where}"]))  # fmt: skip
        assert session.device.type == where
        assert session.respond("my dog died yesterday .").reply.strip()
    model = _pyfunc_model(checkpoint, tmp_path / "served")  # served: on the GPU where there is one
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert session is not model.session and model.session.device.type == expected
    _check_answers(model.predict(None, HISTORIES))


def test_checkpoint_trained_on_cpu_resumes_on_the_device(device: torch.device, compose_train) -> None:
    cpu = _train(compose_train, torch.device("cpu"), run="cpu")
    checkpoint = cpu["output_dir"] / "checkpoints" / "last.ckpt"
    resumed = _train(compose_train, device, f"ckpt_path={checkpoint}", "training.phases.adversarial=2", run="dev")
    assert resumed["device"] == device.type
    assert resumed["phases_done"] == {**PHASES, "adversarial": 2}
    assert resumed["global_step"] == OPTIMIZER_STEPS + 2
    assert resumed["finite"]


@pytest.mark.cpu_dry_run
def test_served_model_answers_on_the_device(device: torch.device, compose_train, tmp_path: Path) -> None:
    """Greedy and sampled replies with reranking (critic scores included): batches and the sampler on the device."""
    fit = _train(compose_train, device)
    model = _pyfunc_model(fit["output_dir"] / "checkpoints" / "last.ckpt", tmp_path / "served")
    model.session.bundle.to(device)
    assert model.session.device.type == device.type
    _check_answers(model.predict(None, HISTORIES))
    sampled = [model.answer(history, {"temperature": 0.9, "rerank": 3, "seed": 1}) for history in HISTORIES]
    _check_answers(sampled)
    assert model.session.random.device.type == device.type


def test_ddp_under_torchrun_on_one_device(device: torch.device, tmp_path: Path) -> None:
    from tiny import tiny_overrides

    from empdg.tracking.local_server import free_port

    run_dir = tmp_path / "run"
    overrides = [
        *tiny_overrides(32, batch_size=4),
        *SHORT,
        "trainer=ddp",
        *accelerator_overrides(device),  # one rank on the one device (NCCL on CUDA, gloo on CPU)
        "logger=none",
        f"paths.root_dir={tmp_path}",
        f"paths.output_dir={run_dir}",
    ]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc-per-node=1",
                "--master-addr=127.0.0.1", f"--master-port={free_port()}"]  # fmt: skip
    script = [str(REPO / "tests" / "training" / "ddp_param_check.py"), "--train-py", str(run_dir)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PL_DISABLE_FORK": "1"}
    result = subprocess.run([*launcher, *script, *overrides], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    rank = json.loads((run_dir / "rank0.json").read_text())
    assert rank["world_size"] == 1 and rank["cluster_environment"] == "TorchElasticEnvironment"
    assert rank["phases_done"] == PHASES
    assert rank["global_step"] == OPTIMIZER_STEPS
    assert rank["after"] != rank["before"]
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
