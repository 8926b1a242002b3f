"""Shared fixtures: the real ED sample beside the checkout, and a quiet torch."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from tiny import REPO, tiny_overrides

SHARED_DIR = REPO.parent / "shared"
REAL_SAMPLE_DIR = SHARED_DIR / "data" / "ed-real-sample"
RELEASE_OUTPUTS_DIR = SHARED_DIR / "data" / "empdg-release-outputs"
PEER_OUTPUTS_DIR = SHARED_DIR / "data" / "peer-release-outputs"

torch.set_num_threads(1)


def _require(path: Path) -> Path:
    """Skip when shared data is absent locally, but fail under CI where it must exist."""
    if path.exists():
        return path
    message = f"{path} is missing (it is provided as ../shared beside the checkout)"
    if os.environ.get("CI"):
        pytest.fail(message + "; CI must have it")
    pytest.skip(message)


@pytest.fixture(scope="session")
def real_sample_dir() -> Path:
    return _require(REAL_SAMPLE_DIR)


@pytest.fixture(scope="session")
def release_outputs_dir() -> Path:
    return _require(RELEASE_OUTPUTS_DIR)


@pytest.fixture(scope="session")
def peer_outputs_dir() -> Path:
    """The MoEL, MIME and KEMP test-set releases (5,255 turns each)."""
    return _require(PEER_OUTPUTS_DIR)


#: Overrides that make any training config tiny: seconds per run on one CPU thread.
TINY_OVERRIDES = [*tiny_overrides(), "logger=none", "training.sample_generations=0"]


@pytest.fixture
def compose_train(tmp_path):
    """Compose conf/train.yaml with the tiny overrides, a temporary root and output folder."""
    from empdg.config import compose

    def _compose(*overrides: str, tiny: bool = True, run: str = "run"):
        base = TINY_OVERRIDES if tiny else []
        paths = [f"paths.root_dir={tmp_path}", f"paths.output_dir={tmp_path / run}"]
        return compose("train", [*base, *paths, *overrides])

    return _compose


#: sizes of the session's tiny pretrained-format models (seconds to build, milliseconds a step)
TINY_PRETRAINED_SIZES = dict(vocab_size=400, layers=1, hidden=32, heads=2, ffn=64, max_positions=512)


@pytest.fixture(scope="session")
def tiny_pretrained(tmp_path_factory) -> dict[str, Path]:
    """A tiny random Hugging Face folder per family (``seq2seq``: BART, ``causal``: GPT-2), built once.

    Made by ``python -m empdg.make_tiny_pretrained``'s function and loaded by the models through the
    same ``from_pretrained`` path as a real checkpoint.
    """
    from empdg.models.tiny_pretrained import make_tiny_pretrained

    return {
        family: make_tiny_pretrained(tmp_path_factory.mktemp(f"tiny-{family}"), family, **TINY_PRETRAINED_SIZES)
        for family in ("seq2seq", "causal")
    }


@pytest.fixture(scope="session")
def bert2bert(tmp_path_factory) -> Path:
    """The BERT2BERT encoder-decoder made from the packaged all-MiniLM-L6-v2 (49 M parameters), built once.

    ``python -m empdg.make_bert2bert``'s function; seconds, about 200 MB in a temporary folder.
    """
    from empdg.models.bert2bert import make_bert2bert

    return make_bert2bert(tmp_path_factory.mktemp("bert2bert"))


#: A tiny MLE-only run: the checkpoint the evaluation and chat tests share.
TINY_RUN = [
    *tiny_overrides(train=4, test=2, mle_only=True),
    "logger=none",
    "training.phases.generator_pretrain=4",
    "trainer.val_check_interval=4",
    "training.sample_generations=0",
    "data.max_context_len=40",  # short, so the chat's history truncation is exercised
]


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A few updates of a 16-d model on a small built-in corpus (trained once per session, in a temporary folder)."""
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("tiny_run")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8"}
    result = subprocess.run(
        [sys.executable, str(REPO / "train.py"), *TINY_RUN, f"paths.root_dir={root}"],
        cwd=root, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return next(root.glob("outputs/**/checkpoints/last.ckpt"))
