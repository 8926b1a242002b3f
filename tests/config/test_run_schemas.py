"""The typed run config: wrong types and unknown keys fail at compose time, impossible values before any data."""

from __future__ import annotations

import re

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from empdg.config import CONFIG_DIR, compose
from empdg.config.schema import (
    ADVERSARIAL_LOSS_NAMES,
    AdversarialConfig,
    AdversarialWeight,
    BuiltinDataConfig,
    EmpatheticDialoguesConfig,
    InvalidSettings,
    OptimConfig,
    TrainingConfig,
    parse_w_adv,
    typed,
)
from empdg.training.adversarial_losses import ADVERSARIAL_LOSSES
from empdg.training.settings import validate_config


def composition_error(*overrides: str) -> str:
    with pytest.raises(ConfigCompositionException) as error:
        compose("train", overrides)
    text, cause = str(error.value), error.value.__cause__
    while cause is not None:  # Hydra wraps OmegaConf's error, which names the full key
        text, cause = text + "\n" + str(cause), cause.__cause__
    return text


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("training.phases.generator_pretrain=abc", "training.phases.generator_pretrain"),
        ("training.gradient_clip_val=big", "training.gradient_clip_val"),
        ("adversarial.n_critc=1", "adversarial.n_critc"),
        ("adversarial.critic.hidden_dim=wide", "adversarial.critic.hidden_dim"),
        ("adversarial.feedback=maybe", "adversarial.feedback"),
        ("adversarial.relaxation=gumbel", "adversarial.relaxation"),  # removed (an alias of estimator): unknown
        ("optim.lr=abc", "optim.lr"),
        ("optim.betas=[a,b]", "optim.betas"),
        ("data.batch_size=abc", "data.batch_size"),
        ("data.vocab.min_cout=2", "data.vocab.min_cout"),
        ("data.download=true", "data.download"),  # an ED key: the built-in data has none
    ],
)
def test_a_wrong_type_or_unknown_key_fails_while_composing_naming_the_key(override, named):
    assert re.search("full_key: " + re.escape(named) + r"\b", composition_error(override))


def test_every_group_option_is_typed_by_its_schema():
    groups = {"adversarial": AdversarialConfig, "optim": OptimConfig, "training": TrainingConfig}
    for group in ("adversarial", "optim"):
        for option in sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml")):
            cfg = compose("train", [f"{group}={option}"])
            assert OmegaConf.get_type(cfg[group]) is groups[group], (group, option)
    assert OmegaConf.get_type(compose("train").training) is TrainingConfig
    data = {"builtin": BuiltinDataConfig, "empathetic_dialogues": EmpatheticDialoguesConfig}
    assert sorted(p.stem for p in (CONFIG_DIR / "data").glob("*.yaml")) == sorted(data)
    for option, schema in data.items():
        assert OmegaConf.get_type(compose("train", [f"data={option}"]).data) is schema


def test_keys_added_with_plus_are_still_refused_before_any_data(compose_train, tmp_path):
    # Hydra lets `+key=...` through a structured node; validate_config rebuilds it from the schema
    added = (("+adversarial.n_critics=2", "adversarial.n_critics"), ("+data.batchsize=4", "data.batchsize"))
    for override, key in added:
        with pytest.raises(ValueError, match=re.escape(f"unknown key {key}")):
            validate_config(compose_train(override))
    assert not (tmp_path / ".cache").exists()


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        (("adversarial.estimator=policy",), "adversarial.estimator='policy'"),
        (("adversarial.loss=hinge",), "adversarial.loss='hinge'"),
        (("adversarial.tau=0",), "adversarial.tau=0.0 must be > 0"),
        (("adversarial.critics=[semantic,judge]",), "adversarial.critics: unknown critic 'judge'"),
        (("adversarial.critics=[semantic,semantic]",), "names a critic twice"),
        (("adversarial.w_adv=fast",), "adversarial.w_adv='fast' is not a weight: write a share"),
        (("adversarial.w_adv=abs:",), "or abs:<weight> such as abs:0.01"),
        (("adversarial.critic.kernel_sizes=[]",), "adversarial.critic.kernel_sizes=[]"),
        (("adversarial.critic.fusion=concat",), "adversarial.critic.fusion='concat'"),
        (("training.label_smoothing=1.0",), "training.label_smoothing=1.0 must be in [0, 1)"),
        (("training.phases.generator_pretrain=-1",), "training.phases.generator_pretrain=-1 must be >= 0"),
        (("optim.lr=0",), "optim.lr=0.0 must be > 0"),
        (("optim.scheduler=cosine",), "optim.scheduler='cosine'"),
        (("optim=noam", "optim.warmup_steps=0"), "optim.warmup_steps=0 must be >= 1"),
        (
            ("training.phases.generator_pretrain=0", "adversarial=none"),
            "every phase budget that runs is 0",
        ),
    ],
)
def test_impossible_values_stop_before_any_data_naming_the_key(compose_train, tmp_path, overrides, named):
    with pytest.raises(ValueError, match=re.escape(named)):
        validate_config(compose_train(*overrides))
    assert not (tmp_path / ".cache").exists()


def test_every_problem_is_listed_at_once(compose_train):
    with pytest.raises(ValueError) as error:
        validate_config(compose_train("optim.lr=-1", "adversarial.gp_lambda=-2", "training.sample_max_len=0"))
    message = str(error.value)
    for key in ("optim.lr=-1.0", "adversarial.gp_lambda=-2.0", "training.sample_max_len=0"):
        assert key in message, message


def test_the_rules_are_the_dataclasses_own_whoever_builds_them():
    # the training module builds its settings from a checkpoint's hyper-parameters the same way
    with pytest.raises(InvalidSettings, match="adversarial.n_critic \\+ adversarial.g_steps = 0") as error:
        typed(AdversarialConfig, {"n_critic": 0, "g_steps": 0}, "adversarial")
    assert len(error.value.problems) == 1
    with pytest.raises(ValueError, match="unknown key training.phase "):
        typed(TrainingConfig, {"phase": {}}, "training")
    with pytest.raises(ValueError, match="training.phases.adversarial: .*Integer"):
        typed(TrainingConfig, {"phases": {"adversarial": "many"}}, "training")
    assert typed(TrainingConfig, {}, "training") == TrainingConfig()  # absent keys: the schema's defaults


def test_the_default_run_config_equals_the_schemas_defaults():
    cfg = compose("train")
    assert typed(TrainingConfig, cfg.training, "training") == TrainingConfig()
    assert typed(OptimConfig, cfg.optim, "optim") == OptimConfig()
    # one source of each default: old runs' own defaults are the migration's (empdg.config.migration)
    assert typed(AdversarialConfig, cfg.adversarial, "adversarial") == AdversarialConfig()


def test_the_adversarial_yaml_states_nothing_the_schema_says():
    text = (CONFIG_DIR / "adversarial" / "empdg.yaml").read_text(encoding="utf-8")
    keys = [line for line in text.splitlines() if line and not line.startswith(("#", " ", "defaults:"))]
    assert keys == []


def test_the_adversarial_loss_names_are_the_implemented_ones():
    assert set(ADVERSARIAL_LOSS_NAMES) == set(ADVERSARIAL_LOSSES)


def test_the_critics_are_one_list_of_names():
    default = typed(AdversarialConfig, compose("train").adversarial, "adversarial")
    assert default.critic_names == ["semantic", "emotion"]
    none = compose("train", ["adversarial=none", "adversarial.n_critic=3", "adversarial.w_adv=0.5"])
    assert (none.adversarial.n_critic, none.adversarial.w_adv, list(none.adversarial.critics)) == (3, "0.5", [])
    # the order written changes nothing: the registry's order builds them
    swapped = compose("train", ["adversarial.critics=[emotion,semantic]"]).adversarial
    assert typed(AdversarialConfig, swapped, "adversarial").critic_names == ["semantic", "emotion"]
    # baselines train without critics unless the command line says otherwise
    for model in ("transformer", "emoprepend"):
        assert list(compose("train", [f"model={model}"]).adversarial.critics) == []
        assert "emotion" in compose("train", [f"model={model}", "adversarial=empdg"]).adversarial.critics
    for removed in ("model.semantic_critic=false", "adversarial.semantic_critic=false", "ablation=no_critics"):
        with pytest.raises(ConfigCompositionException):
            compose("train", [removed])


# -- the model's own settings and the trainer's, before any data ------------------------------------
def test_a_pretrained_model_under_a_word_level_preset_stops_before_any_data_naming_the_fix(compose_train, tmp_path):
    from empdg.errors import ConfigError

    # experiment=quickstart (in the tiny overrides) sets the word-level sizes a pretrained model refuses
    with pytest.raises(ConfigError) as error:
        validate_config(compose_train("model=hf_seq2seq", f"model.pretrained={tmp_path / 'nowhere'}"))
    message = str(error.value)
    assert "model.emb_dim, model.hidden_dim, model.attn_dim, model.ff_dim have no effect" in message
    assert "use experiment=hf_quickstart" in message
    assert not (tmp_path / ".cache").exists()


def test_impossible_model_sizes_stop_before_any_data(compose_train, tmp_path):
    with pytest.raises(ValueError, match=re.escape("must be divisible by model.num_heads=3")):
        validate_config(compose_train("model.num_heads=3"))  # 16 and 16 do not divide by 3
    assert not (tmp_path / ".cache").exists()


def test_ddp_without_a_gpu_and_devices_auto_is_refused_with_how_to_ask_for_cpu_processes(compose_train, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=re.escape("trainer=ddp found no GPU")) as error:
        validate_config(compose_train("trainer=ddp"))
    assert "trainer=ddp trainer.accelerator=cpu trainer.devices=2" in str(error.value)
    with pytest.raises(ValueError, match=re.escape("trainer=ddp with trainer.accelerator=cpu trainer.devices=auto")):
        validate_config(compose_train("trainer=ddp", "trainer.accelerator=cpu"))
    validate_config(compose_train("trainer=ddp", "trainer.devices=2"))  # CPU processes, as the README says
    validate_config(compose_train("trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"))
    validate_config(compose_train("trainer=ddp", "trainer.num_nodes=2"))  # one process per machine, by a launcher
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    validate_config(compose_train("trainer=ddp"))  # all GPUs


@pytest.mark.parametrize(
    ("spelled", "weight"),
    [
        ("0.2", AdversarialWeight("relative", 0.2)),
        (0.35, AdversarialWeight("relative", 0.35)),  # a sweep's sampled float
        ("abs:0.01", AdversarialWeight("absolute", 0.01)),
        ("ABS: 1e-3", AdversarialWeight("absolute", 0.001)),
        ("0", AdversarialWeight("off", 0.0)),  # the same-batch control
        ("abs:0", AdversarialWeight("off", 0.0)),
    ],
)
def test_w_adv_is_a_share_or_an_absolute_weight_or_off(spelled, weight):
    assert parse_w_adv(spelled) == weight
    assert typed(AdversarialConfig, {"w_adv": spelled}, "adversarial").weight == weight


@pytest.mark.parametrize("spelled", ["-0.5", "abs:-1", "nan", "inf", "abs:x", "relative"])
def test_w_adv_refuses_anything_else_naming_both_spellings(spelled):
    with pytest.raises(ValueError, match="a share of the MLE gradient such as 0.2 .0: off., or abs:<weight>"):
        parse_w_adv(spelled)
