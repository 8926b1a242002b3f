"""Pretrained word vectors: copied rows, seeded init for the rest, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from empdg.data.errors import DataError
from empdg.data.vocab import PAD_ID, Vocab
from empdg.data.word_vectors import load_word_vectors

VOCAB = Vocab.build([["happy", "sad", "dog", "unfound"]])
GLOVE = "happy 0.1 0.2 0.3\nsad -1 0 1.5\ndog 2 2 2\ncat 9 9 9\n"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "vectors.txt"
    path.write_text(text, encoding="utf-8")
    return path


def test_found_rows_copied_others_random_pad_zero(tmp_path: Path) -> None:
    weights, found = load_word_vectors(_write(tmp_path, GLOVE), VOCAB, dim=3, seed=0)
    assert weights.shape == (len(VOCAB), 3)
    assert found == 3
    assert torch.allclose(weights[VOCAB.token_to_id("happy")], torch.tensor([0.1, 0.2, 0.3]))
    assert torch.allclose(weights[VOCAB.token_to_id("sad")], torch.tensor([-1.0, 0.0, 1.5]))
    assert torch.all(weights[PAD_ID] == 0)
    unfound = weights[VOCAB.token_to_id("unfound")]
    assert unfound.abs().sum() > 0
    again, _ = load_word_vectors(_write(tmp_path, GLOVE), VOCAB, dim=3, seed=0)
    assert torch.equal(again, weights)
    other, _ = load_word_vectors(_write(tmp_path, GLOVE), VOCAB, dim=3, seed=1)
    assert not torch.equal(other[VOCAB.token_to_id("unfound")], unfound)


def test_word2vec_header_tolerated(tmp_path: Path) -> None:
    weights, found = load_word_vectors(_write(tmp_path, "4 3\n" + GLOVE), VOCAB, dim=3)
    assert found == 3
    assert torch.allclose(weights[VOCAB.token_to_id("dog")], torch.full((3,), 2.0))


def test_dimension_mismatch(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="model.emb_dim"):
        load_word_vectors(_write(tmp_path, GLOVE), VOCAB, dim=4)
    with pytest.raises(ValueError, match="model.emb_dim"):
        load_word_vectors(_write(tmp_path, "4 5\n" + GLOVE), VOCAB, dim=3)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="model.embeddings.path") as caught:
        load_word_vectors(tmp_path / "nope.txt", VOCAB, dim=3)
    assert isinstance(caught.value, DataError)  # the user's to fix: one `error:` line, no traceback


def test_malformed_lines_warned_once(tmp_path: Path) -> None:
    text = GLOVE + "broken 1 2\nunfound x y z\n\nlonely\n"
    with pytest.warns(RuntimeWarning, match="3 malformed") as record:
        weights, found = load_word_vectors(_write(tmp_path, text), VOCAB, dim=3)
    assert len(record) == 1
    assert found == 3
