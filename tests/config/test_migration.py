"""The one migration of stored settings (empdg.config.migration): one test per rule, then a real old checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from empdg.config.migration import CONFIG_VERSION, migrate_flat_params, migrate_hparams
from empdg.config.schema import AdversarialConfig, AdversarialWeight, typed
from empdg.errors import UserError

#: the hyper-parameters of a tiny run trained by the code before the migration existed (weights left out):
#: experiment=quickstart, tiny sizes, adversarial.w_adv_mode=absolute adversarial.w_adv=0.05
OLD_CHECKPOINT = Path(__file__).parent / "fixtures" / "hparams_v1_absolute_weight.json"


def adversarial_of(old: dict, model: dict | None = None) -> dict:
    """The ``adversarial`` section a version-1 checkpoint with ``old`` (and ``model``) migrates to."""
    return migrate_hparams({"model": model or {}, "adversarial": old})["adversarial"]


def test_a_mapping_of_today_comes_back_as_it_was():
    today = {"model": {"name": "empdg"}, "adversarial": {"critics": [], "w_adv": "abs:0.5"}, "config_version": 2}
    assert migrate_hparams(today) == today
    assert CONFIG_VERSION == 2


def test_a_newer_version_is_refused_naming_the_fix():
    with pytest.raises(UserError, match="config_version 3, newer than this empdg's 2: upgrade empdg"):
        migrate_hparams({"model": {}, "adversarial": {}, "config_version": 3})


def test_the_critic_switches_of_the_oldest_runs_in_model_become_the_critics_list():
    migrated = migrate_hparams({"model": {"name": "empdg", "semantic_critic": True, "emotion_critic": False}})
    assert migrated["model"] == {"name": "empdg"}
    assert migrated["adversarial"]["critics"] == ["semantic"]
    assert migrated["config_version"] == CONFIG_VERSION


@pytest.mark.parametrize(
    ("switches", "critics"),
    [
        ({}, ["semantic", "emotion"]),  # absent: both were on by default
        ({"semantic_critic": False}, ["emotion"]),
        ({"semantic_critic": False, "emotion_critic": False}, []),
    ],
)
def test_the_adversarial_critic_switches_become_the_critics_list(switches, critics):
    migrated = adversarial_of(switches)
    assert migrated["critics"] == critics
    assert not any(key.endswith("_critic") for key in migrated)


def test_the_relaxation_alias_becomes_the_estimator_when_set():
    assert adversarial_of({"estimator": "reinforce", "relaxation": "soft"})["estimator"] == "soft"
    assert adversarial_of({"estimator": "reinforce", "relaxation": None})["estimator"] == "reinforce"
    assert "relaxation" not in adversarial_of({"relaxation": None})


def test_mismatched_negatives_off_becomes_a_zero_mismatch_weight():
    assert adversarial_of({"mismatched_negatives": False, "mismatch_weight": 0.5})["mismatch_weight"] == 0.0
    on = adversarial_of({"mismatched_negatives": True, "mismatch_weight": 0.3})
    assert on["mismatch_weight"] == 0.3 and "mismatched_negatives" not in on


@pytest.mark.parametrize(
    ("old", "w_adv"),
    [
        ({}, "0.2"),  # version 1's defaults: relative, share 0.2
        ({"w_adv_mode": "relative", "w_adv_share": 0.3, "w_adv": 0.01}, "0.3"),
        ({"w_adv_mode": "absolute", "w_adv_share": 0.2, "w_adv": 0.05}, "abs:0.05"),
        ({"w_adv_mode": "absolute", "w_adv": 0}, "0"),  # no adversarial term: the control now
        ({"w_adv_mode": "absolute", "w_adv": 0.05, "same_batch_control": True}, "0"),
    ],
)
def test_the_three_weight_keys_and_the_control_become_one_w_adv(old, w_adv):
    migrated = adversarial_of(old)
    assert migrated["w_adv"] == w_adv
    assert not {"w_adv_mode", "w_adv_share", "same_batch_control"} & set(migrated)


def test_input_norm_is_dropped_and_soft_keeps_its_estimator():
    assert adversarial_of({"estimator": "soft", "input_norm": "unit"})["estimator"] == "soft"
    assert adversarial_of({"estimator": "soft", "input_norm": "none"})["estimator"] == "soft"  # now normalises
    assert "input_norm" not in adversarial_of({"estimator": "gumbel", "input_norm": "none"})
    with pytest.raises(UserError, match="input_norm=unit with estimator=gumbel"):
        adversarial_of({"estimator": "gumbel", "input_norm": "unit"})


def test_a_run_stored_before_fusion_and_word_match_plays_the_old_critic():
    assert adversarial_of({"critic": {"hidden_dim": 8}})["critic"] == {
        "hidden_dim": 8,
        "fusion": "sum",
        "word_match": False,
    }
    kept = adversarial_of({"critic": {"fusion": "sum_product", "word_match": True}})["critic"]
    assert (kept["fusion"], kept["word_match"]) == ("sum_product", True)


FIXED_AT_DEFAULT = {
    "sample_temperature": 1.0,
    "greedy_negatives": True,
    "critic_grad_to_encoders": False,
    "critic_betas": [0.5, 0.9],
    "clip_value": 0.01,
    "critic": {"match_scale": 30.0, "match_idf_power": 2.0},
}


def test_removed_keys_at_their_default_are_dropped_silently():
    migrated = adversarial_of(FIXED_AT_DEFAULT)
    assert not set(FIXED_AT_DEFAULT) - {"critic"} & set(migrated)
    assert set(migrated["critic"]) == {"fusion", "word_match"}
    typed(AdversarialConfig, migrated, "adversarial")  # today's schema takes it


@pytest.mark.parametrize(
    ("old", "named"),
    [
        ({"sample_temperature": 0.7}, "adversarial.sample_temperature=0.7"),
        ({"greedy_negatives": False}, "adversarial.greedy_negatives=False"),
        ({"critic_grad_to_encoders": True}, "adversarial.critic_grad_to_encoders=True"),
        ({"critic_betas": [0.9, 0.99]}, "adversarial.critic_betas=[0.9, 0.99]"),
        ({"clip_value": 0.05}, "adversarial.clip_value=0.05"),
        ({"critic": {"match_scale": 10.0}}, "adversarial.critic.match_scale=10.0"),
        ({"critic": {"match_idf_power": 0.0}}, "adversarial.critic.match_idf_power=0.0"),
    ],
)
def test_a_removed_key_at_another_value_is_a_user_error_naming_it(old, named):
    with pytest.raises(UserError, match=f"this run used {named.replace('[', '.').replace(']', '.')}"):
        adversarial_of(old)


def test_logged_params_of_an_old_run_are_migrated_as_text():
    params = {
        "training.phases.adversarial": "3",
        "adversarial.semantic_critic": "False",
        "adversarial.emotion_critic": "True",
        "adversarial.w_adv_mode": "absolute",
        "adversarial.w_adv": "0.05",
        "adversarial.critic_betas": "[0.5, 0.9]",
        "adversarial.critic.hidden_dim": "16",
    }
    assert migrate_flat_params(params) == {
        "training.phases.adversarial": "3",  # other sections as logged
        "adversarial.critics": ["emotion"],
        "adversarial.w_adv": "abs:0.05",
        "adversarial.critic.hidden_dim": 16,
        "adversarial.critic.fusion": "sum",
        "adversarial.critic.word_match": False,
    }
    today = {"adversarial.critics": "[]", "adversarial.w_adv": "0.2", "config_version": "2"}
    assert migrate_flat_params(today)["adversarial.critics"] == "[]"  # a run of today: as logged


def test_a_real_old_checkpoint_builds_the_module_it_trained():
    from empdg.training.module import EmpDGModule

    old = json.loads(OLD_CHECKPOINT.read_text(encoding="utf-8"))
    assert "config_version" not in old and old["adversarial"]["w_adv_mode"] == "absolute"
    module = EmpDGModule(**old)
    assert module.adv.weight == AdversarialWeight("absolute", 0.05)
    assert module.adv.critic_names == ["semantic", "emotion"] and list(module.critics) == ["semantic", "emotion"]
    adv = module.adv
    assert (adv.estimator, adv.mismatch_weight, adv.critic.fusion, adv.critic.word_match) == (
        "gumbel",
        0.5,
        "sum_product",
        True,
    )
    assert (adv.critic.hidden_dim, adv.critic.num_filters) == (16, 8)
    # what it saves is today's format: a checkpoint of it loads without the migration's rules
    assert module.hparams["config_version"] == CONFIG_VERSION
    assert module.hparams["adversarial"]["w_adv"] == "abs:0.05"
    assert migrate_hparams(dict(module.hparams))["adversarial"] == module.hparams["adversarial"]
