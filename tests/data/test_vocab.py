"""Vocabulary: fixed special ids, deterministic ordering, encode/decode and persistence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from empdg.data import vocab as V
from empdg.data.errors import InvalidFileError
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


def _saved(tmp_path: Path) -> dict:
    path = tmp_path / "vocab.json"
    Vocab.build(TOKENS).save(path)
    return json.loads(path.read_text(encoding="utf-8"))


def _edit(**fields):
    def edit(data: dict) -> str:
        return json.dumps({**data, **fields})

    return edit


def _tokens(change):
    def edit(data: dict) -> str:
        data["tokens"] = change(data["tokens"])
        data.pop("fingerprint")  # else the fingerprint check would catch every edit
        return json.dumps(data)

    return edit


# (edit of a saved vocab.json, the field and problem the error must name)
BAD_VOCAB_FILES = {
    "nested": (lambda data: "[" * 100_000 + "]" * 100_000, "nested more than"),
    "not_an_object": (lambda data: json.dumps(data["tokens"]), "expected a JSON object, found list"),
    "tokens_are_ints": (
        _tokens(lambda tokens: tokens[:8] + list(range(5))),
        "tokens[8]: Input should be a valid string",
    ),
    "tokens_a_string": (_edit(tokens="[PAD] [UNK]"), "tokens: Input should be a valid list"),
    "only_specials": (_tokens(lambda tokens: tokens[:8]), "tokens: List should have at least 9 items"),
    "specials_missing": (_tokens(lambda tokens: tokens[1:]), "tokens[0]: expected the special token '[PAD]'"),
    "duplicate_token": (_tokens(lambda tokens: [*tokens, tokens[8]]), f"tokens[{8 + 6}]: 'am' is also tokens[8]"),
    "count_not_int": (_edit(counts={"am": "3"}), "counts.am: Input should be a valid integer"),
    "count_of_no_token": (_edit(counts={"zzz": 3}), "counts.zzz: 'zzz' is not an ordinary token"),
    "edited_token": (
        _edit(tokens=[*V.SPECIAL_TOKENS, "am", "i", "so", "sad", "hapy", "zebra"], counts={}),
        "fingerprint: does not",
    ),
    "tokenizer_not_a_string": (_edit(kind="subword", tokenizer_json={"model": {}}), "tokenizer_json: Input should be"),
    "unknown_kind": (_edit(kind="bpe", tokenizer_json="{}"), "kind: Input should be 'subword'"),
}


@pytest.mark.parametrize("case", sorted(BAD_VOCAB_FILES))
def test_a_bad_vocab_file_is_an_invalid_file_naming_the_field(case: str, tmp_path: Path) -> None:
    edit, problem = BAD_VOCAB_FILES[case]
    path = tmp_path / "vocab.json"
    path.write_text(edit(_saved(tmp_path)), encoding="utf-8")
    with pytest.raises(InvalidFileError) as info:
        Vocab.load(path)
    assert str(info.value).startswith(f"{path}: ") and problem in str(info.value), str(info.value)


def test_vocab_file_size_and_encoding_are_checked_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "vocab.json"
    Vocab.build(TOKENS).save(path)
    monkeypatch.setattr(V, "VOCAB_MAX_BYTES", 100)
    with pytest.raises(InvalidFileError, match=r"vocab.json: vocabulary is \d+ bytes, over the limit of 100 bytes"):
        Vocab.load(path)
    monkeypatch.undo()
    path.write_bytes(path.read_bytes().replace(b'"zebra"', '"zébra"'.encode("latin-1")))
    with pytest.raises(InvalidFileError, match=r"vocab.json: vocabulary is not UTF-8 text \(byte \d+"):
        Vocab.load(path)


def test_subword_vocab_file_round_trips_and_a_broken_tokenizer_is_named(tmp_path: Path) -> None:
    pytest.importorskip("tokenizers")
    from tokenizers import Tokenizer, models

    from empdg.data.vocab import SubwordVocab

    tokenizer = Tokenizer(models.WordLevel({"[unk]": 0, "happy": 1, "sad": 2}, unk_token="[unk]"))
    path = tmp_path / "vocab.json"
    SubwordVocab(tokenizer.to_str()).save(path)
    assert Vocab.load(path) == SubwordVocab(tokenizer.to_str())
    data = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps({**data, "tokenizer_json": '{"model": 3}'}), encoding="utf-8")
    with pytest.raises(InvalidFileError, match=r"vocab.json: tokenizer_json: not a tokenizer the tokenizers library"):
        Vocab.load(path)
    path.write_text(json.dumps({**data, "normalization": "klingon"}), encoding="utf-8")
    with pytest.raises(InvalidFileError, match=r"vocab.json: normalization: Input should be 'full' or 'moel'"):
        Vocab.load(path)
