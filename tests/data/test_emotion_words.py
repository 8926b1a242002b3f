"""EmpDG's emotion words: lexicon entries that are alphabetic and not stop-words."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from empdg.data.emotion_words import STOPWORDS, EmotionLexicon, get_lexicon
from empdg.data.text import normalize


def test_known_lexicon_words_are_emotion_words() -> None:
    lexicon = get_lexicon()
    # These are entries of nrclex's nrc_en.json ("terrified", "scared" and "sad" are not).
    for word in ("happy", "afraid", "angry", "lonely", "excited", "proud", "fear"):
        assert word in lexicon
        assert lexicon.is_emotion_word(word), word
    assert "terrified" not in lexicon
    assert lexicon.is_emotion_word("Happy")
    assert "anger" in lexicon.affects("angry")


def test_stopwords_and_punctuation_are_excluded() -> None:
    lexicon = get_lexicon()
    for token in ("the", "not", "is", "am", "i", "!", ".", ",", "'s", "n't"):
        assert not lexicon.is_emotion_word(token), token
    assert {"not", "is", "am", "are", "will", "would", "have", "do"} <= STOPWORDS


def test_stopword_in_lexicon_is_excluded(tmp_path: Path) -> None:
    path = tmp_path / "lex.json"
    path.write_text(json.dumps({"not": ["negative"], "joy": ["joy"], "x2": ["fear"]}), encoding="utf-8")
    lexicon = EmotionLexicon(path)
    assert "not" in lexicon and "x2" in lexicon
    assert lexicon.emotion_words(["not", "joy", "x2"]) == ["joy"]


def test_emotion_words_and_mask_on_an_utterance() -> None:
    lexicon = get_lexicon()
    tokens = normalize("I was so happy and proud, but not afraid!")
    assert lexicon.emotion_words(tokens) == ["happy", "proud", "afraid"]
    mask = lexicon.emotion_mask(tokens)
    assert len(mask) == len(tokens)
    assert [t for t, m in zip(tokens, mask) if m] == ["happy", "proud", "afraid"]
    assert lexicon.emotion_mask([]) == []


def test_get_lexicon_is_cached() -> None:
    assert get_lexicon() is get_lexicon()
    assert len(get_lexicon()) > 5000


def test_import_does_not_load_textblob_or_nltk_corpora() -> None:
    code = (
        "import sys; from empdg.data.emotion_words import get_lexicon; get_lexicon();"
        "bad = [m for m in sys.modules if m.startswith(('textblob', 'nltk.corpus'))]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
