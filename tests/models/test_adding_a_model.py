"""docs/adding_a_model.md, proven: a generator defined only in this file trains with critics and decodes.

The model is out of tree, as a user's own would be: its class registers when this module is imported,
its YAML lies in a temporary folder added to Hydra's search path, and it reaches training, the
critics, the checkpoint and decoding only through the generator seam (empdg.models.base).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf
from tiny import short_adversarial_run
from torch import Tensor, nn

from empdg.config import compose
from empdg.config.store import register_configs
from empdg.data.vocab import PAD_ID
from empdg.models.base import EncodedDialogue, Generator, GeneratorSizes
from empdg.models.decoding import DecodingConfig, decode
from empdg.models.registry import build_generator, register_generator
from empdg.models.settings import GeneratorSettings
from empdg.training.checkpoint import load_checkpoint
from empdg.training.run import run_training


@dataclass
class BagOfWordsGRUSettings(GeneratorSettings):
    """The shared sizes (the attention ones unused here) and one switch of its own."""

    emotion_classifier: bool = True

    def problems(self) -> list[str]:
        problems = super().problems()
        if self.copy:
            problems.append("model.copy=true: bow_gru has no copy mechanism")
        return problems


@register_generator("bow_gru")
class BagOfWordsGRU(Generator):
    """x̃0 = tanh(W · mean of the context's word vectors); a GRU decoder starts from it."""

    settings_class = BagOfWordsGRUSettings

    def __init__(self, settings: BagOfWordsGRUSettings, vocab_size: int) -> None:
        sizes = GeneratorSizes(
            vocab_size=vocab_size,
            num_emotions=settings.num_emotions,
            emb_dim=settings.emb_dim,
            hidden_dim=settings.hidden_dim,
            max_positions=None,
            has_emotion_classifier=settings.emotion_classifier,
            copy=False,
        )
        super().__init__(settings, sizes)
        self.embedding = nn.Embedding(vocab_size, settings.emb_dim, padding_idx=PAD_ID)
        self.summary = nn.Linear(settings.emb_dim, settings.hidden_dim)
        self.classifier = nn.Linear(settings.hidden_dim, settings.num_emotions) if settings.emotion_classifier else None
        self.start = nn.Parameter(torch.randn(settings.emb_dim) * 0.1)
        self.gru = nn.GRU(settings.emb_dim, settings.hidden_dim, batch_first=True)
        self.output = nn.Linear(settings.hidden_dim, vocab_size)

    @property
    def word_embedding(self) -> nn.Embedding:
        return self.embedding

    def encode(self, batch: dict) -> EncodedDialogue:
        real = (~batch["context_pad_mask"]).unsqueeze(-1).float()
        mean = (self.embedding(batch["context_ids"]) * real).sum(dim=1) / real.sum(dim=1).clamp_min(1.0)
        x0 = torch.tanh(self.summary(mean))
        logits = self.classifier(x0) if self.classifier is not None else None
        return EncodedDialogue(x0=x0, w0=None, emotion_logits=logits, state=x0)

    def decode_sequence(self, encoded: EncodedDialogue, token_vectors: Tensor) -> Tensor:
        start = self.start.expand(encoded.batch_size, 1, -1)
        states, _ = self.gru(torch.cat([start, token_vectors], dim=1), encoded.state.unsqueeze(0).contiguous())
        return torch.log_softmax(self.output(states), dim=-1)

    def new_cache(self, encoded: EncodedDialogue) -> dict[str, Tensor]:
        return {"hidden": encoded.state}  # [B, H]: the batch on dim 0, so the default reordering fits

    def decode_step(self, encoded: EncodedDialogue, cache: dict[str, Tensor], previous: Tensor | None) -> Tensor:
        inputs = self.start.expand(encoded.batch_size, -1) if previous is None else previous
        states, hidden = self.gru(inputs.unsqueeze(1), cache["hidden"].unsqueeze(0).contiguous())
        cache["hidden"] = hidden[0]
        return torch.log_softmax(self.output(states[:, 0]), dim=-1)

    def decoder_parameters(self) -> list[nn.Parameter]:
        return list(self.gru.parameters()) + list(self.output.parameters())


MODEL_YAML = """\
defaults:
  - /schema/model/bow_gru@_here_
  - _self_

name: bow_gru
emotion_classifier: true
"""


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """A user's own config folder holding only ``model/bow_gru.yaml``."""
    register_configs()  # stores model/bow_gru_schema: this model registered after empdg.config was imported
    folder = tmp_path / "my_configs"
    (folder / "model").mkdir(parents=True)
    (folder / "model" / "bow_gru.yaml").write_text(MODEL_YAML)
    return folder


class Watch(pl.Callback):
    """Keeps the module, the critics' first weights and the phase of every training batch."""

    def on_fit_start(self, trainer, pl_module) -> None:
        self.module = pl_module
        self.critics_before = {k: v.clone() for k, v in pl_module.critics.state_dict().items()}
        self.phases: list[str] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.phases.append(pl_module.phases.current)


def test_an_out_of_tree_generator_trains_with_critics_and_decodes(tmp_path: Path, config_dir: Path) -> None:
    torch.manual_seed(0)
    cfg = compose(
        "train",
        short_adversarial_run(
            tmp_path,
            f"hydra.searchpath=[file://{config_dir}]",
            "model=bow_gru",
            "adversarial=empdg",
            "trainer.val_check_interval=1000",
        ),
    )
    assert cfg.model.name == "bow_gru" and cfg.model.hidden_dim == 16  # the tiny sizes reached it
    watch = Watch()
    metrics = run_training(cfg, [watch])
    module = watch.module
    assert isinstance(module.generator, BagOfWordsGRU)
    assert set(module.critics) == {"semantic", "emotion"}  # the critics read it through the seam ...
    assert set(watch.phases) == {"generator_pretrain", "critic_pretrain", "adversarial"}
    after = module.critics.state_dict()
    assert any(not torch.equal(after[k], v) for k, v in watch.critics_before.items())  # ... and learnt from it
    assert module.wasserstein_history
    assert "val/emotion_acc" in metrics

    checkpoint = next((tmp_path / "run" / "checkpoints").glob("*.ckpt"))
    generator = load_checkpoint(checkpoint).bundle.generator  # rebuilt by name from the hyper-parameters
    assert isinstance(generator, BagOfWordsGRU)
    batch = next(iter(module.trainer.datamodule.val_dataloader()))
    for strategy in ("greedy", "beam"):
        ids = decode(generator, batch, DecodingConfig(strategy=strategy, max_len=6, beam_size=3))
        assert ids.shape[0] == batch["context_ids"].shape[0] and 1 <= ids.shape[1] <= 6
        assert int(ids.max()) < generator.sizes.vocab_size


def test_its_settings_are_checked_like_any_model(config_dir: Path) -> None:
    overrides = [f"hydra.searchpath=[file://{config_dir}]", "model=bow_gru"]
    with pytest.raises(Exception) as caught:  # noqa: B017 (Hydra's composition error names the key)
        compose("train", [*overrides, "model.emotion_classifier=perhaps"])
    assert "model.emotion_classifier" in f"{caught.value}\n{caught.value.__cause__}"
    model = OmegaConf.to_container(compose("train", [*overrides, "model.copy=true"]).model, resolve=True)
    with pytest.raises(ValueError, match="bow_gru has no copy mechanism"):
        build_generator(model, vocab_size=100)
