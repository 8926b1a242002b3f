"""Every model of conf/model against every ablation of conf/ablation, and against the critics.

The matrix is read from the config folders, so a new model or ablation file joins it without editing
this test. A combination either builds (typed settings, run checks, generator) or is refused with a
message saying why; which ones are refused follows two rules, checked here against what happens:
an ablation that sets model keys the model does not have (``no_emotion_encoder``, ``woG`` on a model
outside EmpDG's family) fails while Hydra composes, naming the ablation file and the key; an ablation
that changes the critics (``ablation.needs_critics``) is refused for a run without critics.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra.errors import HydraException
from omegaconf import OmegaConf
from tiny import tiny_hf_overrides

from empdg.config import CONFIG_DIR, compose
from empdg.models.decoding import DecodingConfig, decode
from empdg.models.registry import build_generator, generator_class
from empdg.training.checkpoint import load_checkpoint
from empdg.training.run import run_training
from empdg.training.settings import validate_config

MODELS = sorted(path.stem for path in (CONFIG_DIR / "model").glob("*.yaml"))
ABLATIONS = sorted(path.stem for path in (CONFIG_DIR / "ablation").glob("*.yaml"))
#: pretrained-format models: their folder comes from the session's tiny ones (family by model file)
PRETRAINED_FAMILY = {"hf_seq2seq": "seq2seq", "hf_causal": "causal"}


def pretrained_override(model: str, tiny_pretrained: dict[str, Path]) -> list[str]:
    family = PRETRAINED_FAMILY.get(model)
    return [f"model.pretrained={tiny_pretrained[family]}"] if family else []


def model_names() -> dict[str, str]:
    """conf/model file -> the model.name it selects."""
    return {name: OmegaConf.load(CONFIG_DIR / "model" / f"{name}.yaml").name for name in MODELS}


def expected_refusal(model: str, ablation: str, has_critics: bool) -> str | None:
    """Why (model, ablation) must be refused, by the rules of this module's docstring; None: it must build."""
    settings = generator_class(model_names()[model]).settings_class
    fields = {f.name for f in dataclasses.fields(settings)} | {"name"}
    spec = OmegaConf.load(CONFIG_DIR / "ablation" / f"{ablation}.yaml")
    foreign = sorted(set(spec.get("model", {})) - fields)
    if foreign:
        return f"model.{foreign[0]}"
    if spec.ablation.get("needs_critics") and not has_critics:
        return "changes the critics"
    return None


def test_the_matrix_covers_every_model_and_ablation() -> None:
    assert {"empdg", "transformer", "multi_trs", "emoprepend", "moel", "mime", "seq2seq"} <= set(MODELS)
    files = {m: OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "model" / f"{m}.yaml")) for m in MODELS}
    pretrained = {m for m, keys in files.items() if "pretrained" in keys}
    assert pretrained == set(PRETRAINED_FAMILY), "a new pretrained-format model needs its family here"
    assert {"none", "no_emotion_encoder", "no_feedback", "vanilla_gan", "woG"} <= set(ABLATIONS)


@pytest.mark.parametrize("model", MODELS)
def test_every_model_with_every_ablation_builds_or_is_refused_saying_why(
    model: str, tmp_path: Path, tiny_pretrained
) -> None:
    has_critics = bool(compose("train", [f"model={model}"]).adversarial.critics)
    vocab_size = 64
    if model in PRETRAINED_FAMILY:  # the tokenizer's ids after the 8 specials
        vocab_size = 8 + len(json.loads((tiny_pretrained[PRETRAINED_FAMILY[model]] / "tokenizer.json").read_text())
                                      ["model"]["vocab"])
    outcomes = {}
    for ablation in ABLATIONS:
        expected = expected_refusal(model, ablation, has_critics)
        overrides = [f"model={model}", f"ablation={ablation}", f"paths.output_dir={tmp_path}"]
        overrides += pretrained_override(model, tiny_pretrained)
        try:
            cfg = compose("train", overrides)
        except HydraException as error:  # the ablation sets a key this model does not have
            message = str(error) + str(error.__cause__ or "")
            assert expected is not None, f"{model} x {ablation} should compose: {message}"
            assert f"ablation/{ablation}" in message and expected in message, message
            outcomes[ablation] = "refused at compose"
            continue
        try:
            validate_config(cfg)
        except ValueError as error:
            assert expected is not None, f"{model} x {ablation} should pass the run checks: {error}"
            assert expected in str(error) and f"ablation={ablation}" in str(error), str(error)
            outcomes[ablation] = "refused by the run checks"
            continue
        assert expected is None, f"{model} x {ablation} should be refused ({expected})"
        model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
        generator = build_generator(model_cfg, vocab_size=vocab_size)
        assert generator.settings == generator_class(cfg.model.name).settings_class.from_mapping(
            {k: v for k, v in model_cfg.items() if k not in ("name", "embeddings", "init_from")}
        )
        outcomes[ablation] = "builds"
    assert outcomes["none"] == "builds"


#: the built-in models outside EmpDG's family, and one of it without critics by default
REFUSALS = [
    ("moel", "no_emotion_encoder", "model.emotion_encoder"),
    ("seq2seq", "woG", "model."),
    ("transformer", "vanilla_gan", "changes the critics"),
]


@pytest.mark.parametrize(("model", "ablation", "reason"), REFUSALS)
def test_known_refusals(model: str, ablation: str, reason: str) -> None:
    has_critics = bool(compose("train", [f"model={model}"]).adversarial.critics)
    assert reason in expected_refusal(model, ablation, has_critics)


CRITIC_RUN = [
    "training.phases.generator_pretrain=2",
    "training.phases.critic_pretrain=2",
    "training.phases.adversarial=1",
    "adversarial.g_steps=1",
    "adversarial.report_batches=1",
    "trainer.val_check_interval=1000",
]
ALL_PHASES = {"generator_pretrain", "critic_pretrain", "adversarial"}


class Watch(pl.Callback):
    """Keeps the module and the phase of every training batch."""

    def on_fit_start(self, trainer, pl_module) -> None:
        self.module = pl_module
        self.phases: set[str] = set()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.phases.add(pl_module.phases.current)


@pytest.mark.parametrize("adversarial", ["empdg", "none"])
@pytest.mark.parametrize("model", MODELS)
def test_every_model_trains_with_both_critics_or_alone_reloads_and_decodes(
    model: str, adversarial: str, compose_train, tiny_pretrained
) -> None:
    """``model=X`` with the game's critics (forced for the baselines that default to none), or alone."""
    torch.manual_seed(0)
    ablation, critics = "none", [f"adversarial={adversarial}"]
    if model in PRETRAINED_FAMILY:  # the word-level tiny sizes mean nothing to a pretrained folder
        base = [*tiny_hf_overrides(tiny_pretrained[PRETRAINED_FAMILY[model]]), "logger=none"]
        cfg = compose_train(*base, "training.sample_generations=0", f"model={model}", f"ablation={ablation}",
                            *critics, *CRITIC_RUN, tiny=False)  # fmt: skip
    else:
        cfg = compose_train(f"model={model}", f"ablation={ablation}", *critics, *CRITIC_RUN)
    watch = Watch()
    metrics = run_training(cfg, [watch])
    run = Path(cfg.paths.output_dir)
    if adversarial == "empdg":  # both critics trained, reported on, and played against
        assert set(watch.module.critics) == {"semantic", "emotion"} and watch.phases == ALL_PHASES
        reported = {"wgan/critic/sem_gold_beats_greedy", "wgan/critic/emo_gold_beats_greedy"}
        assert reported <= set(metrics), sorted(metrics)
        assert watch.module.wasserstein_history and (run / "critic_report.md").exists()
    else:
        assert not watch.module.critics and watch.phases == {"generator_pretrain"}
        assert not any(key.startswith("wgan/critic/") for key in metrics), sorted(metrics)
    loaded = load_checkpoint(next((run / "checkpoints").glob("*.ckpt"))).bundle.generator
    assert type(loaded) is type(watch.module.generator) and loaded.settings == watch.module.generator.settings
    batch = next(iter(watch.module.trainer.datamodule.val_dataloader()))
    for strategy in ("greedy", "beam"):
        ids = decode(loaded.eval(), batch, DecodingConfig(strategy=strategy, max_len=6, beam_size=3))
        assert ids.shape[0] == batch["context_ids"].shape[0] and 1 <= ids.shape[1] <= 6
