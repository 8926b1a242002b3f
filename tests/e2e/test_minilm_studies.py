"""The study scripts with the MiniLM generator (``--minilm DIR``): which commands they run, not the runs.

``experiments/baselines/run.py`` and ``experiments/adversarial_study/run.py`` are run in-process with
their ``run`` (the subprocess call) replaced by a recorder; any folder with a ``config.json`` stands in
for a ``make_bert2bert`` build. The studies themselves, end to end, are the lead's (their READMEs).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


def load_study(name: str):
    spec = importlib.util.spec_from_file_location(f"study_{name}", EXPERIMENTS / name / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def record(study, monkeypatch, argv: list[str]) -> list[list[str]]:
    """The train/evaluate commands ``study.main()`` runs with ``argv``."""
    commands: list[list[str]] = []
    monkeypatch.setattr(study, "run", lambda command, log, threads: commands.append(command))
    monkeypatch.setattr(sys, "argv", ["run.py", *argv])
    study.main()
    return commands


def train_commands(commands: list[list[str]], run_name: str) -> list[list[str]]:
    return [c for c in commands if c[1] == "train.py" and f"run_name={run_name}" in c]


@pytest.fixture
def minilm(tmp_path) -> Path:
    folder = tmp_path / "b2b"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    return folder


def test_the_baselines_minilm_row_trains_the_build_with_mle_alone_and_its_own_budget(minilm, tmp_path, monkeypatch):
    study = load_study("baselines")
    argv = ["--smoke", "--seeds", "1", "--out", str(tmp_path / "out"), "--only", "minilm:1", "moel:1", "--minilm",
            str(minilm), "--minilm-updates", "7", "--minilm-override", "model.freeze_encoder=true"]  # fmt: skip
    commands = record(study, monkeypatch, argv)
    (row,) = train_commands(commands, "minilm-s1")
    assert row[row.index("model=hf_seq2seq") :][:6] == [
        "model=hf_seq2seq", f"model.pretrained={minilm.resolve()}", "optim=finetune", "adversarial=none",
        "model.freeze_encoder=true", "training.phases.generator_pretrain=7",
    ]  # fmt: skip
    assert "experiment=hf_quickstart" in row and "experiment=quickstart" not in row  # smoke: sizes from the build
    (moel,) = train_commands(commands, "moel-s1")
    assert "experiment=quickstart" in moel and "model.freeze_encoder=true" not in moel
    assert "training.phases.generator_pretrain=30" in moel  # --smoke's budget, not --minilm-updates
    assert "| minilm |" not in (tmp_path / "out_smoke" / "results.md").read_text()  # no run finished


def test_the_baselines_refuse_a_minilm_folder_that_is_no_build(tmp_path, monkeypatch, capsys) -> None:
    with pytest.raises(SystemExit):
        record(load_study("baselines"), monkeypatch, ["--smoke", "--minilm", str(tmp_path)])
    assert "no config.json there; build it: python -m empdg.make_bert2bert DIR" in capsys.readouterr().err


def test_the_adversarial_study_pretrains_and_plays_every_arm_on_the_minilm_generator(minilm, tmp_path, monkeypatch):
    study = load_study("adversarial_study")
    monkeypatch.setattr(study, "REPO", tmp_path)  # the default --out, under REPO/outputs
    monkeypatch.setattr(study, "instrument_table", lambda out, arms, seeds: "")  # reads MLflow
    argv = ["--smoke", "--seeds", "1", "--only", "control:1", "reinforce:1", "--minilm", str(minilm),
            "--generator-override", "model.freeze_encoder=true"]  # fmt: skip
    commands = record(study, monkeypatch, argv)
    generator = ["model=hf_seq2seq", f"model.pretrained={minilm.resolve()}", "optim=finetune",
                 "model.freeze_encoder=true"]  # fmt: skip
    trained = [*train_commands(commands, "pretrain-mle"), *train_commands(commands, "control-s1"),
               *train_commands(commands, "reinforce-s1")]  # fmt: skip
    assert len(trained) == 3
    for command in trained:  # the shared pre-training and the arms: one model
        start = command.index("model=hf_seq2seq")
        assert command[start : start + 4] == generator and "model=empdg" not in command
        assert "experiment=hf_quickstart" in command
    out = tmp_path / "outputs" / "adversarial_study_minilm_smoke"  # never the EmpDG study's folder
    assert any(f"model.init_from={out / 'pretrain' / 'checkpoints' / 'last.ckpt'}" in c for c in trained)


def test_the_adversarial_study_starts_every_arm_from_a_given_checkpoint_without_pretraining(
    minilm, tmp_path, monkeypatch
):
    study = load_study("adversarial_study")
    monkeypatch.setattr(study, "instrument_table", lambda out, arms, seeds: "")  # reads MLflow
    init = tmp_path / "minilm-s1" / "last.ckpt"
    init.parent.mkdir()
    init.write_bytes(b"")
    argv = ["--smoke", "--seeds", "1", "--out", str(tmp_path / "out"), "--only", "control:1", "gumbel_match:1",
            "--minilm", str(minilm), "--init", str(init)]  # fmt: skip
    commands = record(study, monkeypatch, argv)
    assert not train_commands(commands, "pretrain-mle")
    arms = [*train_commands(commands, "control-s1"), *train_commands(commands, "gumbel_match-s1")]
    assert len(arms) == 2 and all(f"model.init_from={init.resolve()}" in c for c in arms)


def test_the_adversarial_study_refuses_an_init_checkpoint_that_is_not_there(tmp_path, monkeypatch, capsys) -> None:
    with pytest.raises(SystemExit):
        record(load_study("adversarial_study"), monkeypatch, ["--smoke", "--init", str(tmp_path / "none.ckpt")])
    assert "no such checkpoint" in capsys.readouterr().err


def test_the_adversarial_studys_instruments_are_found_for_a_relative_out_folder(tmp_path, monkeypatch) -> None:
    import mlflow

    study = load_study("adversarial_study")
    monkeypatch.setattr(study, "REPO", tmp_path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mlruns").mkdir()
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    experiment = client.create_experiment("adv")
    run = client.create_run(experiment, tags={"empdg.run_folder": str(tmp_path / "adv" / "control-s1")})
    for step, value in enumerate((0.2, 0.4)):
        client.log_metric(run.info.run_id, "wgan/adv_mle_grad_cos", value, step=step)
    (tmp_path / "adv" / "control-s1" / "eval").mkdir(parents=True)
    (tmp_path / "adv" / "control-s1" / "eval" / "predictions.jsonl").write_text("")
    table = study.instrument_table(Path("adv"), ["control"], [1])  # as --out adv gives it: relative
    (row,) = [line for line in table.splitlines() if line.startswith("| control |")]
    assert row.split(" | ")[1] == "0.3"  # the mean of the run's two values
