"""What MLflow shows and sends: experiments marked as model training, the run page in the model-training view, the
dataset input, telemetry off unless the user says so."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

from empdg.tracking import TELEMETRY_SWITCH
from empdg.tracking.resilient_logger import ResilientMLFlowLogger, build_logger
from empdg.tracking.store import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, probe_tracking_store


def kind(client: MlflowClient, name: str) -> str | None:
    return client.get_experiment_by_name(name).tags.get(EXPERIMENT_KIND_TAG)


def test_experiments_the_framework_creates_are_marked_as_model_training(tmp_path: Path) -> None:
    # MLflow 3.0-3.x opened such an experiment on its runs table; 3.17 reads the URL instead (next tests)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    assert EXPERIMENT_KIND == "custom_model_development"  # MLflow 3's value for model training (not GenAI)

    # a run's logger (training, evaluation) creating its experiment
    logger_cfg = {
        "name": "mlflow", "tracking_uri": uri, "artifact_location": str(tmp_path / "art"),
        "experiment_name": "trained", "run_name": "r",
    }  # fmt: skip
    logger = build_logger(logger_cfg, tmp_path / "run", {"model": "empdg"})
    assert isinstance(logger, ResilientMLFlowLogger) and logger.startup_note is None
    logger.finalize("success")
    assert kind(client, "trained") == EXPERIMENT_KIND

    # the start-up write check of a sweep creating the study's experiment
    assert probe_tracking_store(uri, "swept", (tmp_path / "art").as_uri()) is None
    assert kind(client, "swept") == EXPERIMENT_KIND

    # an experiment whose owner chose another kind keeps it
    client.create_experiment("theirs", tags={EXPERIMENT_KIND_TAG: "genai_development"})
    assert probe_tracking_store(uri, "theirs") is None
    assert kind(client, "theirs") == "genai_development"


def _in_a_fresh_process(code: str, env: dict[str, str]) -> list[str]:
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.split()


def test_telemetry_is_off_unless_the_user_turns_it_on() -> None:
    # MLflow already stays quiet under pytest or CI: take those signals away so the setting is what decides
    quiet = {"PYTEST_CURRENT_TEST", "CI", "GITHUB_ACTIONS", "DO_NOT_TRACK", TELEMETRY_SWITCH}
    env = {k: v for k, v in os.environ.items() if k not in quiet}
    # a command module first, MLflow after it (as in every command): MLflow starts no telemetry client
    code = (
        "import os, empdg.commands.compare, mlflow\n"
        "from mlflow.telemetry import get_telemetry_client\n"
        f"print(os.environ.get({TELEMETRY_SWITCH!r}), get_telemetry_client() is None)\n"
    )
    assert _in_a_fresh_process(code, env) == ["true", "True"]
    # the user's own setting wins (MLflow is not imported here: with telemetry on it would try the network)
    code = f"import os, empdg.tracking\nprint(os.environ.get({TELEMETRY_SWITCH!r}))\n"
    assert _in_a_fresh_process(code, {**env, TELEMETRY_SWITCH: "false"}) == ["false"]


def test_the_end_of_run_line_opens_the_run_in_the_model_training_view(tmp_path: Path) -> None:
    # MLflow 3.17's UI shows its GenAI view unless the URL says workflowType=machine_learning (its JS
    # bundle: the parameter wins over the switch the browser remembers; the experiment kind tag no longer counts)
    from empdg.tracking.resilient_logger import describe_run
    from empdg.tracking.store import run_page_url

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    logger_cfg = {"name": "mlflow", "tracking_uri": uri, "experiment_name": "e", "run_name": "r"}
    logger = build_logger(logger_cfg, tmp_path / "run", {})
    lines = describe_run(logger, tmp_path / "run").splitlines()
    experiment_id, run_id = logger.experiment_id, logger.run_id
    assert f"  open it with: mlflow ui --backend-store-uri {uri}" in lines
    assert (
        f"  then: http://127.0.0.1:5000/#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"
        in lines
    )
    # a tracking server serves the UI itself
    assert run_page_url("http://tracking.lab:5000/", "3", "abc") == (
        "http://tracking.lab:5000/#/experiments/3/runs/abc?workflowType=machine_learning"
    )


def test_a_training_run_logs_its_data_as_a_dataset_input(compose_train, tmp_path: Path, capsys) -> None:
    import json

    from empdg.training.run import run_training

    cfg = compose_train(
        "training.phases.generator_pretrain=2", "training.phases.critic_pretrain=0",
        "training.phases.adversarial=0", "trainer.val_check_interval=2", "logger=mlflow",
    )  # fmt: skip
    run_training(cfg)
    client = MlflowClient(tracking_uri=str(cfg.logger.tracking_uri))
    run_id = json.loads((tmp_path / "run" / "mlflow_run.json").read_text())["run_id"]
    [given] = client.get_run(run_id).inputs.dataset_inputs
    cache = next((tmp_path / ".cache" / "empdg").glob("builtin-*.json"))
    assert (given.dataset.name, given.dataset.source_type) == ("builtin", "local")
    assert given.dataset.digest == cache.stem.removeprefix("builtin-")  # the preprocessing cache's hash
    assert json.loads(given.dataset.source) == {"uri": str(cache.resolve())}
    assert {tag.key: tag.value for tag in given.tags} == {"mlflow.data.context": "train"}
    # the summary links the run in the model-training view and says what the built-in corpus is
    out = capsys.readouterr().out
    assert f"/runs/{run_id}?workflowType=machine_learning" in out
    assert "note: trained on the built-in demonstration corpus" in out
