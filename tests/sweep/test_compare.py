"""empdg.compare on MLflow runs created here with known metrics and tags."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from empdg.cli.compare import run_compare

# ablation -> (val/ppl, val/emotion_acc) of each seed
RUNS = {
    "none": [(30.0, 0.30), (32.0, 0.40), (34.0, 0.50)],
    "no_critics": [(40.0, 0.20), (42.0, 0.30)],
    "woG": [(50.0, 0.10)],
}


@pytest.fixture()
def store(tmp_path: Path) -> str:
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    (tmp_path / "mlruns").mkdir()
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("ablations", artifact_location=(tmp_path / "art").as_uri())
    for ablation, values in RUNS.items():
        for seed, (ppl, acc) in enumerate(values):
            run = client.create_run(experiment, run_name=f"empdg-{ablation}", tags={"ablation": ablation})
            client.log_param(run.info.run_id, "seed", seed)
            client.log_metric(run.info.run_id, "val/ppl", ppl)
            client.log_metric(run.info.run_id, "val/emotion_acc", acc)
            client.set_terminated(run.info.run_id)
    skipped = [
        ("FAILED", {"ablation": "none"}),  # crashed run
        ("FINISHED", {"ablation": "none", "sweep.role": "parent"}),  # a sweep's parent run
    ]
    for status, tags in skipped:
        run = client.create_run(experiment, run_name="skip", tags=tags)
        client.log_metric(run.info.run_id, "val/ppl", 1000.0)
        client.set_terminated(run.info.run_id, status)
    return uri


def config(uri: str, **kwargs) -> OmegaConf:
    base = {
        "experiment_name": "ablations",
        "tracking_uri": uri,
        "group_by": "ablation",
        "metrics": ["val/ppl", "val/emotion_acc"],
        "filter": "",
        "statuses": ["FINISHED"],
        "order": ["none", "no_critics", "woG"],
        "log_run": True,
    }
    return OmegaConf.create({**base, **kwargs})


def test_grouped_table_has_mean_and_std(store: str, tmp_path: Path) -> None:
    rows = run_compare(config(store), tmp_path / "out")
    assert [r.label for r in rows] == ["none", "no_critics", "woG"]
    none, no_critics, wog = rows
    assert none.mean_std("val/ppl") == pytest.approx((32.0, 2.0))
    assert none.mean_std("val/emotion_acc") == pytest.approx((0.4, 0.1))
    assert no_critics.mean_std("val/ppl") == pytest.approx((41.0, 2**0.5))
    table = (tmp_path / "out" / "comparison.md").read_text()
    assert "| none | 3 | 32.0000 ± 2.0000 | 0.4000 ± 0.1000 |" in table
    assert "| no_critics | 2 | 41.0000 ± 1.4142 | 0.2500 ± 0.0707 |" in table
    assert "| woG | 1 | 50.0000 | 0.1000 |" in table  # one seed: no spread shown
    assert (tmp_path / "out" / "comparison.png").stat().st_size > 0
    client = MlflowClient(tracking_uri=store)
    (comparison,) = client.search_runs(
        [client.get_experiment_by_name("ablations").experiment_id], "tags.`empdg.role` = 'comparison'"
    )
    names = {a.path for a in client.list_artifacts(comparison.info.run_id, "comparison")}
    assert names == {"comparison/comparison.md", "comparison/comparison.csv", "comparison/comparison.png"}

    # the comparison run itself is never a row of a later comparison; one row per run without group_by
    rows = run_compare(config(store, group_by=None, log_run=False), tmp_path / "out2")
    assert len(rows) == 6 and all(len(r.run_ids) == 1 for r in rows)


def test_group_by_param_and_cli(store: str, tmp_path: Path) -> None:
    rows = run_compare(config(store, group_by="params.seed", order=[], log_run=False), tmp_path / "out")
    assert [r.label for r in rows] == ["0", "1", "2"]
    assert rows[2].mean_std("val/ppl") == pytest.approx((34.0, 0.0))

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "empdg.compare",
        "experiment=ablations",
        "group_by=ablation",
        f"paths.root_dir={tmp_path}",
        "metrics=[val/ppl]",
        "log_run=false",
    ]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| none | 3 | 32.0000 ± 2.0000 |" in done.stdout
    assert list((tmp_path / "comparisons" / "ablations").glob("*/comparison.md"))
