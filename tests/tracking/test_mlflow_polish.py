"""What MLflow shows and sends: experiments marked as model training, telemetry off unless the user says so."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

from empdg.tracking import TELEMETRY_SWITCH
from empdg.tracking.mlflow_tracking import (
    EXPERIMENT_KIND,
    EXPERIMENT_KIND_TAG,
    ResilientMLFlowLogger,
    build_logger,
    probe_tracking_store,
)


def kind(client: MlflowClient, name: str) -> str | None:
    return client.get_experiment_by_name(name).tags.get(EXPERIMENT_KIND_TAG)


def test_experiments_the_framework_creates_open_on_the_runs_table(tmp_path: Path) -> None:
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
