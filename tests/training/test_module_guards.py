"""Module-level rules: pretrained vectors reach the generator, non-finite losses never train silently."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from empdg.data.datamodule import DialogueDataModule
from empdg.training.module import NonFiniteLossError
from empdg.training.run import build_module


def build(cfg):
    datamodule = DialogueDataModule(OmegaConf.to_container(cfg.data, resolve=True), seed=int(cfg.seed))
    datamodule.setup("fit")
    return datamodule, build_module(cfg, datamodule)


def test_pretrained_vectors_from_a_local_glove_file(compose_train, tmp_path):
    glove = tmp_path / "vectors.txt"
    rows = {"sorry": [0.5] * 16, "happy": [-1.0] * 16, "notinvocab": [2.0] * 16}
    glove.write_text("".join(f"{w} {' '.join(map(str, v))}\n" for w, v in rows.items()), encoding="utf-8")
    datamodule, module = build(compose_train(f"model.embeddings.path={glove}", "model.embeddings.freeze=true"))
    weight = module.generator.embedding.weight
    for word in ("sorry", "happy"):
        assert torch.equal(weight[datamodule.vocab.token_to_id(word)], torch.tensor(rows[word]))
    assert not weight.requires_grad


def test_nonfinite_loss_stops_with_a_message_naming_the_fix(compose_train):
    _, module = build(compose_train("training.on_nonfinite=error"))
    with pytest.raises(NonFiniteLossError, match="training.on_nonfinite=skip"):
        module.check_finite("train/loss", torch.tensor(float("nan")))


def test_nonfinite_loss_is_skipped_and_counted(compose_train):
    _, module = build(compose_train("training.on_nonfinite=skip"))
    assert module.check_finite("train/loss", torch.tensor(1.0))
    assert not module.check_finite("train/loss", torch.tensor(float("inf")))
    assert not module.check_finite("train/d_loss", torch.tensor(float("nan")))
    assert module.counters.skipped_nonfinite == 2


def test_a_pretrained_generators_own_word_vectors_freeze_with_the_output_layer_tied_to_them(
    compose_train, tiny_pretrained
):
    """model.embeddings.freeze=true with model.pretrained: the checkpoint's vectors, not a vectors file."""
    from tiny import tiny_hf_overrides

    from empdg.training.run import pretrained_vocab

    cfg = compose_train(*tiny_hf_overrides(tiny_pretrained["seq2seq"]), "model=hf_seq2seq",
                        "model.embeddings.freeze=true", tiny=False)  # fmt: skip
    datamodule = DialogueDataModule(OmegaConf.to_container(cfg.data, resolve=True), vocab=pretrained_vocab(cfg))
    datamodule.setup("fit")
    generator = build_module(cfg, datamodule).generator
    embedding = generator.token_embedding().weight
    assert generator.base_model.get_output_embeddings().weight is embedding and not embedding.requires_grad
    trainable = {name for name, p in generator.named_parameters() if p.requires_grad}
    assert not any("embed_tokens" in name or name.endswith("shared.weight") for name in trainable)
    assert any("self_attn.q_proj" in name for name in trainable) and "emotion_head.weight" in trainable
