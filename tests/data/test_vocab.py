"""Vocabulary: fixed special ids, deterministic ordering, encode/decode and persistence."""

from __future__ import annotations

from pathlib import Path

import pytest

from empdg.data import vocab as V
from empdg.data.vocab import EOS_ID, PAD_ID, SOS_ID, UNK, UNK_ID, Vocab

TOKENS = [["i", "am", "so", "happy"], ["i", "am", "sad"], ["so", "sad", "i", "am"], ["zebra"]]


def test_special_ids_fixed() -> None:
    expected = ["[PAD]", "[UNK]", "[SOS]", "[EOS]", "[CLS]", "[LAB]", "[SPK]", "[LST]"]
    names = ["PAD", "UNK", "SOS", "EOS", "CLS", "LAB", "SPK", "LST"]
    vocab = Vocab.build(TOKENS)
    for i, (name, tok) in enumerate(zip(names, expected)):
        assert getattr(V, name) == tok
        assert getattr(V, f"{name}_ID") == i
        assert vocab.token_to_id(tok) == i and vocab.id_to_token(i) == tok


def test_min_count_and_ordering() -> None:
    vocab = Vocab.build(TOKENS)
    # counts: am=3, i=3, sad=2, so=2, happy=1, zebra=1 -> by -count then alphabetically
    assert vocab.tokens[8:] == ["am", "i", "sad", "so", "happy", "zebra"]
    vocab2 = Vocab.build(TOKENS, min_count=2)
    assert vocab2.tokens[8:] == ["am", "i", "sad", "so"]
    assert "happy" not in vocab2 and "am" in vocab2
    assert len(Vocab.build(TOKENS, max_size=10)) == 10
    assert vocab.counts["am"] == 3


def test_special_tokens_in_data_are_not_duplicated() -> None:
    vocab = Vocab.build([["[PAD]", "hi", "[EOS]"]])
    assert vocab.tokens == [*V.SPECIAL_TOKENS, "hi"]


def test_encode_decode() -> None:
    vocab = Vocab.build(TOKENS)
    ids = vocab.encode(["i", "am", "unseen"])
    assert ids[-1] == UNK_ID
    assert vocab.decode(ids) == ["i", "am", UNK]
    seq = [SOS_ID, *vocab.encode(["so", "sad"]), EOS_ID, *vocab.encode(["happy"]), PAD_ID]
    assert vocab.decode(seq) == ["so", "sad"]
    assert vocab.decode(seq, stop_at_eos=False) == ["so", "sad", "happy"]
    assert vocab.decode(seq, strip_special=False, stop_at_eos=False)[0] == "[SOS]"


def test_save_load_round_trip(tmp_path: Path) -> None:
    vocab = Vocab.build(TOKENS)
    path = tmp_path / "vocab.json"
    vocab.save(path)
    loaded = Vocab.load(path)
    assert loaded == vocab
    assert loaded.fingerprint() == vocab.fingerprint()
    assert loaded.counts == vocab.counts
    assert Vocab.build(TOKENS, min_count=2).fingerprint() != vocab.fingerprint()


def test_only_specials_is_an_error() -> None:
    with pytest.raises(ValueError, match="data.min_count=5"):
        Vocab.build(TOKENS, min_count=5)
    with pytest.raises(ValueError, match="the train split is empty") as info:  # not a min_count problem
        Vocab.build([])
    assert "min_count" not in str(info.value)


def test_emotion_token_ids() -> None:
    vocab = Vocab.build(TOKENS)
    ids = vocab.emotion_token_ids(lambda tok: tok in {"happy", "sad", "[PAD]"})
    assert sorted(ids) == sorted(vocab.encode(["happy", "sad"]))
