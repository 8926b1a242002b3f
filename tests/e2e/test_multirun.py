"""`python train.py -m ... ablation=a,b,c,d` runs every ablation, each an MLflow run tagged with its name."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from tiny import REPO, tiny_overrides

ABLATIONS = ["none", "no_emotion_encoder", "no_feedback", "vanilla_gan"]


@pytest.mark.slow
def test_ablation_grid_multirun_lands_in_mlflow(tmp_path: Path) -> None:
    command = [
        sys.executable, str(REPO / "train.py"), "-m", f"ablation={','.join(ABLATIONS)}", *tiny_overrides(),
        "training.phases.generator_pretrain=3", "training.phases.critic_pretrain=1", "training.phases.adversarial=1",
        "training.sample_generations=1", f"paths.root_dir={tmp_path}",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("quickstart")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.tags["ablation"] for r in runs) == sorted(ABLATIONS)
    assert all("val/ppl" in r.data.metrics for r in runs)
    assert sorted(p.name for p in (tmp_path / "multirun" / "quickstart").glob("*/*_empdg-*")) == [
        f"{i}_empdg-{name}" for i, name in enumerate(ABLATIONS)
    ]
