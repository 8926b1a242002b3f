"""Fixtures shared by the training tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny import tiny_overrides

from empdg.config import compose
from empdg.training.run import run_training


@pytest.fixture(scope="session")
def two_step_run(tmp_path_factory) -> Path:
    """A finished 2-update run (monitor=null, a checkpoint every update, all kept)."""
    root = tmp_path_factory.mktemp("resume_source")
    overrides = [
        *tiny_overrides(mle_only=True),
        "logger=none",
        "training.sample_generations=0",
        "training.phases.generator_pretrain=2",
        "callbacks.checkpoint.monitor=null",
        "callbacks.checkpoint.every_n_train_steps=1",
        "callbacks.checkpoint.save_top_k=-1",
        f"paths.root_dir={root}",
        f"paths.output_dir={root / 'run'}",
    ]
    run_training(compose("train", overrides))
    return root / "run"
