"""The generator registry and the strict model settings: names, unknown keys, wrong types, compose-time checks."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from empdg.config import compose
from empdg.data.vocab import SPECIAL_TOKENS
from empdg.models.base import Generator
from empdg.models.empdg import EmpDGGenerator, EmpDGSettings
from empdg.models.registry import build_generator, generator_class, register_generator, registered_generators

VOCAB_SIZE = len(SPECIAL_TOKENS) + 20
TINY = {"emb_dim": 16, "hidden_dim": 16, "attn_dim": 8, "ff_dim": 16}


def test_in_tree_generators_are_found_without_a_list() -> None:
    generators = registered_generators()
    assert {"empdg", "transformer", "emoprepend"} <= set(generators)
    assert generators["empdg"] is generators["transformer"] is generators["emoprepend"] is EmpDGGenerator
    assert EmpDGGenerator.settings_class is EmpDGSettings


def test_unknown_model_name_lists_the_choices() -> None:
    with pytest.raises(ValueError, match=r"model\.name='gpt5'.*choose one of \[") as error:
        generator_class("gpt5")
    for name in ("emoprepend", "empdg", "mime", "moel", "multi_trs", "seq2seq", "transformer"):
        assert f"'{name}'" in str(error.value)
    with pytest.raises(ValueError, match=r"model\.name is missing"):
        build_generator(dict(TINY), VOCAB_SIZE)


def test_build_generator_skips_run_level_keys() -> None:
    model = {"name": "emoprepend", **TINY, "emotion_encoder": False, "emotion_injection": "label_embedding"}
    model |= {"embeddings": {"path": None, "freeze": False}, "init_from": None}
    generator = build_generator(model, VOCAB_SIZE)
    assert isinstance(generator, EmpDGGenerator)
    assert generator.settings.emotion_injection == "label_embedding"
    assert generator.sizes.vocab_size == VOCAB_SIZE and generator.sizes.hidden_dim == 16


def test_unknown_model_keys_are_errors_naming_the_key_and_the_valid_ones() -> None:
    expected = r"unknown key model\.hiden_dim, model\.semantic_critic \(valid keys: .*hidden_dim"
    with pytest.raises(ValueError, match=expected):
        build_generator({"name": "empdg", **TINY, "hiden_dim": 8, "semantic_critic": True}, VOCAB_SIZE)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("hidden_dim", "abc", "an integer"),
        ("hidden_dim", 16.5, "an integer"),
        ("num_layers", True, "an integer"),
        ("copy", "yes", "true or false"),
        ("dropout", "0.1", "a number"),
        ("emotion_injection", 3, "a string"),
    ],
)
def test_wrong_types_are_errors_naming_the_key(key: str, value, expected: str) -> None:
    with pytest.raises(ValueError, match=rf"model\.{key}={value!r} must be {expected}"):
        EmpDGSettings.from_mapping({**TINY, key: value})


def test_registration_errors() -> None:
    with pytest.raises(TypeError, match="must subclass"):
        register_generator("not_a_generator")(dict)

    class NoSettings(Generator):
        pass

    with pytest.raises(TypeError, match="settings_class"):
        register_generator("no_settings")(NoSettings)

    class Impostor(EmpDGGenerator):
        pass

    with pytest.raises(ValueError, match="'empdg' is already registered by empdg.models.empdg.EmpDGGenerator"):
        register_generator("empdg")(Impostor)
    assert registered_generators()["empdg"] is EmpDGGenerator
    with pytest.raises(ValueError, match="at least one"):
        register_generator()


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("model.hidden_dim=abc", "model.hidden_dim"),
        ("model.copy=maybe", "model.copy"),
        ("model.nonsense=1", "model.nonsense"),
        ("model.embeddings.nonsense=1", "model.embeddings.nonsense"),
    ],
)
def test_wrong_model_keys_fail_at_compose_time_naming_the_key(override: str, key: str) -> None:
    with pytest.raises(Exception) as caught:  # noqa: B017 (Hydra's composition error; the key is what matters)
        compose("train", [override])
    message = f"{caught.value}\n{caught.value.__cause__}"
    assert key in message


def test_a_forced_unknown_key_fails_when_the_generator_is_built() -> None:
    cfg = compose("train", ["+model.nonsense=1"])  # `+` forces a key past the schema ...
    with pytest.raises(ValueError, match=r"unknown key model\.nonsense"):  # ... the settings still refuse it
        build_generator(OmegaConf.to_container(cfg.model, resolve=True), VOCAB_SIZE)


@pytest.mark.parametrize(
    ("name", "classifier", "encoder", "injection"),
    [
        ("empdg", True, True, "projection"),
        ("transformer", False, False, "none"),
        ("emoprepend", True, False, "label_embedding"),
    ],
)
def test_each_model_file_composes_and_builds(name: str, classifier: bool, encoder: bool, injection: str) -> None:
    cfg = compose("train", [f"model={name}", *(f"model.{k}={v}" for k, v in TINY.items())])
    generator = build_generator(OmegaConf.to_container(cfg.model, resolve=True), VOCAB_SIZE)
    settings = generator.settings
    assert (settings.emotion_classifier, settings.emotion_encoder, settings.emotion_injection) == (
        classifier,
        encoder,
        injection,
    )
    assert (settings.num_layers, settings.num_heads) == (1, 2)  # the paper sizes come from the dataclass


@pytest.mark.parametrize("name", ["transformer", "emoprepend"])
def test_baselines_train_without_critics_unless_told_otherwise(name: str) -> None:
    adversarial = compose("train", [f"model={name}"]).adversarial
    assert list(adversarial.critics) == []
    told = compose("train", [f"model={name}", "adversarial=empdg"]).adversarial
    assert list(told.critics) == ["semantic", "emotion"]
    full = compose("train", ["model=empdg"]).adversarial
    assert list(full.critics) == ["semantic", "emotion"]
