"""A tiny trained checkpoint shared by the evaluation and chat tests (trained once per session)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tiny import tiny_overrides

REPO_ROOT = Path(__file__).resolve().parents[2]
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
    """A few updates of a 16-d model on a small built-in corpus (trained in a temporary folder)."""
    root = tmp_path_factory.mktemp("tiny_run")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8"}
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "train.py"), *TINY_RUN, f"paths.root_dir={root}"],
        cwd=root, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return next(root.glob("outputs/**/checkpoints/last.ckpt"))
