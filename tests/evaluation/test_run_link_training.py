"""Training writes ``mlflow_run.json`` (the run id evaluations link to) as soon as its MLflow run exists."""

from __future__ import annotations

import json
from pathlib import Path

from mlflow.tracking import MlflowClient
from pytorch_lightning.loggers import CSVLogger, MLFlowLogger
from tiny import tiny_overrides

from empdg.evaluation.run_link import RUN_RECORD_FILE, find_training_run, record_training_run


def test_training_writes_the_run_record_and_an_evaluation_finds_the_run(compose_train, tmp_path: Path) -> None:
    from empdg.training.run import run_training

    overrides = [*tiny_overrides(mle_only=True), "training.phases.generator_pretrain=1", "trainer.val_check_interval=1"]
    cfg = compose_train(*overrides, "training.sample_generations=0", "logger=mlflow", tiny=False)
    run_training(cfg)

    folder = tmp_path / "run"
    record = json.loads((folder / RUN_RECORD_FILE).read_text(encoding="utf-8"))
    uri = f"sqlite:///{(tmp_path / 'mlruns' / 'mlflow.db').resolve()}"
    assert record["tracking_uri"] == uri
    run = MlflowClient(tracking_uri=uri).get_run(record["run_id"])
    assert run.data.tags["empdg.run_folder"] == str(folder.resolve())
    assert record["experiment_id"] == run.info.experiment_id
    found = find_training_run(folder, uri)
    assert found is not None and found.run_id == record["run_id"]


def test_the_record_is_written_only_for_mlflow_loggers_and_never_fails(tmp_path: Path) -> None:
    assert record_training_run(None, tmp_path) is None
    assert record_training_run(CSVLogger(save_dir=str(tmp_path)), tmp_path) is None

    class Broken(MLFlowLogger):
        @property
        def run_id(self):
            raise RuntimeError("store gone")

    broken = Broken(tracking_uri=f"sqlite:///{tmp_path / 'x.db'}")
    assert record_training_run(broken, tmp_path) is None
    assert not (tmp_path / RUN_RECORD_FILE).exists()
