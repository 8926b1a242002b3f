"""The demonstration corpus must be deterministic, cover every emotion and look like ED dialogues."""

from __future__ import annotations

import time
from pathlib import Path

from empdg.data.builtin import CSV_HEADER, generate_builtin_corpus, write_builtin_csvs
from empdg.data.conversation import EMOTIONS, SPLITS


def _words(text: str) -> list[str]:
    return text.lower().replace(".", " ").replace(",", " ").split()


def test_same_seed_same_corpus_other_seed_differs() -> None:
    assert generate_builtin_corpus(seed=3) == generate_builtin_corpus(seed=3)
    assert generate_builtin_corpus(seed=3) != generate_builtin_corpus(seed=4)


def test_default_sizes_and_speed() -> None:
    start = time.perf_counter()
    corpus = generate_builtin_corpus()
    assert time.perf_counter() - start < 0.5
    assert {split: len(convs) for split, convs in corpus.items()} == {"train": 768, "valid": 96, "test": 96}


def test_every_split_has_all_emotions_and_unique_ids() -> None:
    corpus = generate_builtin_corpus(seed=1, train_per_emotion=2, valid_per_emotion=1, test_per_emotion=1)
    assert tuple(corpus) == SPLITS
    for split, convs in corpus.items():
        assert {c.emotion for c in convs} == set(EMOTIONS)
        ids = [c.conv_id for c in convs]
        assert len(set(ids)) == len(ids)
        assert all(i.startswith(f"builtin:{split}:") for i in ids)


def test_dialogue_shape_and_feedback() -> None:
    corpus = generate_builtin_corpus(seed=0)
    listener_turns = with_feedback = 0
    for convs in corpus.values():
        for conv in convs:
            assert 4 <= len(conv.utterances) <= 6
            assert all(u.strip() for u in conv.utterances)
            assert conv.situation.strip().endswith(".")
            # speaker first: the opening utterance talks about the situation's event
            assert set(_words(conv.situation)[-3:]) <= set(_words(conv.utterances[0]))
            for i in range(1, len(conv.utterances), 2):
                listener_turns += 1
                with_feedback += i + 1 < len(conv.utterances)
    assert with_feedback / listener_turns > 0.7


def test_text_looks_like_ed() -> None:
    text = " ".join(u for c in generate_builtin_corpus()["train"] for u in c.utterances)
    for marker in ("I'm", "can't", "it's", ",", "?", "!"):
        assert marker in text


def test_write_builtin_csvs(tmp_path: Path) -> None:
    corpus = generate_builtin_corpus(seed=2, train_per_emotion=2, valid_per_emotion=1, test_per_emotion=1)
    write_builtin_csvs(tmp_path, corpus)
    for split in SPLITS:
        lines = (tmp_path / f"{split}.csv").read_text(encoding="utf-8").splitlines()
        assert lines[0] == CSV_HEADER
        rows = [line.split(",") for line in lines[1:]]
        assert all(len(row) == 8 for row in rows)
        assert sum(len(c.utterances) for c in corpus[split]) == len(rows)
        assert any("_comma_" in row[5] for row in rows)
        first = corpus[split][0]
        for k, row in enumerate(rows[: len(first.utterances)]):
            assert row[0] == first.conv_id and row[1] == str(k + 1) and row[2] == first.emotion
            assert row[5].replace("_comma_", ",") == first.utterances[k]
            assert row[3].replace("_comma_", ",") == first.situation
            assert row[6:] == ["", ""]
        speakers = [row[4] for row in rows[: len(first.utterances)]]
        assert len(set(speakers[::2])) == 1 and len(set(speakers[1::2])) == 1 and speakers[0] != speakers[1]
