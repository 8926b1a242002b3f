"""DDP on CPU (gloo): the command line works with 2 processes, and the ranks stay in sync."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tiny import REPO, tiny_overrides

TINY = [
    *tiny_overrides(32, batch_size=4),
    "trainer=ddp",
    "trainer.devices=2",
    "trainer.accelerator=cpu",
    "trainer.val_check_interval=3",
    "trainer.log_every_n_steps=1",
    "training.sample_generations=2",
    "training.sample_max_len=5",
]


MLE_ONLY = [
    "training.phases.generator_pretrain=4",
    "training.phases.critic_pretrain=0",
    "training.phases.adversarial=0",
]
# through every phase: the critics' optimizer and the gradient penalty's double backward under DDP
ADVERSARIAL = [
    "training.phases.generator_pretrain=2",
    "training.phases.critic_pretrain=2",
    "training.phases.adversarial=2",
    "adversarial.n_critic=1",
    "adversarial.g_steps=2",
]
PHASES = {"mle": (MLE_ONLY, 4), "adversarial": (ADVERSARIAL, 2 + 2 + 2 * 3)}


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PL_DISABLE_FORK": "1"}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


@pytest.mark.slow
def test_train_py_with_ddp_on_two_cpu_processes(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = _run(
        [
            sys.executable,
            str(REPO / "train.py"),
            *TINY,
            *ADVERSARIAL,
            "logger=csv",
            f"paths.root_dir={tmp_path}",
            f"paths.output_dir={run_dir}",
        ],
        cwd=tmp_path,
    )
    assert "empdg run finished" in result.stdout
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / "config.yaml").is_file()
    assert list(run_dir.rglob("metrics.csv"))
    assert "val/ppl" in next(run_dir.rglob("metrics.csv")).read_text().splitlines()[0]


@pytest.mark.slow
@pytest.mark.parametrize("phases", sorted(PHASES))
def test_parameters_are_equal_across_ranks_and_trained(tmp_path: Path, phases: str) -> None:
    overrides, optimizer_steps = PHASES[phases]
    out = tmp_path / "out"
    out.mkdir()
    _run(
        [
            sys.executable,
            str(Path(__file__).with_name("ddp_param_check.py")),
            str(out),
            *TINY,
            *overrides,
            "logger=none",
            f"paths.root_dir={tmp_path}",
            f"paths.output_dir={out}",
        ],
        cwd=tmp_path,
    )
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["rank"] for r in ranks] == [0, 1]
    assert all(r["world_size"] == 2 for r in ranks)
    assert all(r["global_step"] == optimizer_steps for r in ranks)  # every optimizer.step() counts
    assert ranks[0]["before"] == ranks[1]["before"]  # same initialisation
    assert ranks[0]["after"] == ranks[1]["after"]  # gradients were averaged: identical updates
    assert ranks[0]["after"] != ranks[0]["before"]  # and training did change the parameters
