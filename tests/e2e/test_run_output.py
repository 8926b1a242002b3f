"""What a user sees in the terminal of `train.py` without a progress bar: progress lines, no library noise."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from tiny import REPO, tiny_overrides

NOISE = (
    "dataloader is not resumable",
    "manual optimization and every_n_train_steps",
    "LeafSpec",
    "litlogger",
)


@pytest.mark.slow
def test_train_py_prints_progress_lines_and_no_library_noise(tmp_path: Path) -> None:
    overrides = [
        *tiny_overrides(),  # trainer.enable_progress_bar=false
        "logger=none",
        "training.sample_generations=0",
        "training.phases.generator_pretrain=2",
        "training.phases.critic_pretrain=1",
        "training.phases.adversarial=1",
        "adversarial.g_steps=1",
        "callbacks.progress.every_n_steps=1",
        "callbacks.checkpoint.monitor=null",
        "callbacks.checkpoint.every_n_train_steps=1",
        f"paths.root_dir={tmp_path}",
        f"paths.output_dir={tmp_path / 'run'}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(REPO / "train.py"), *overrides],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    progress = re.findall(r"progress: (\w+) update \d+/\d+ \| run update (\d+)/(\d+) .*updates/s \| ETA", output)
    assert [(phase, int(done), int(total)) for phase, done, total in progress] == [
        ("generator_pretrain", 1, 5),
        ("generator_pretrain", 2, 5),
        ("critic_pretrain", 3, 5),
        ("adversarial", 4, 5),
        ("adversarial", 5, 5),
    ]
    for noise in NOISE:
        assert noise not in output, f"{noise!r} was printed:\n{output[-4000:]}"
    checkpoints = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("*.ckpt"))
    assert "last.ckpt" in checkpoints and not [n for n in checkpoints if n.startswith("best")], checkpoints
    assert "latest checkpoint:" in result.stdout
