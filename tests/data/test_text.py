"""Normalisation must reproduce the token conventions of the published ED outputs."""

from __future__ import annotations

import pytest

from empdg.data.text import expand_contractions, normalize, restore_commas, split_sentences, tokenize


def test_restore_commas() -> None:
    assert restore_commas("yes_comma_ i did_comma_really") == "yes, i did,really"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("i can't go", "i can not go"),
        ("i won't go", "i will not go"),
        ("i'm here", "i am here"),
        ("it's fine", "it is fine"),
        ("don't and didn't", "do not and did not"),
        ("you're, we've, they'll, i'd", "you are, we have, they will, i would"),
        ("let's go y'all", "let us go you all"),
        ("she's sure that's what's up", "she is sure that is what is up"),
        ("i'd've known", "i would have known"),
    ],
)
def test_expand_contractions(text: str, expected: str) -> None:
    assert expand_contractions(text) == expected


def test_curly_apostrophe_is_treated_like_straight() -> None:
    assert expand_contractions("i\u2019m sure it\u2019s ok, i can\u2019t") == "i am sure it is ok, i can not"


def test_possessive_s_is_not_expanded() -> None:
    assert expand_contractions("my mom's car") == "my mom's car"
    assert normalize("My mom's car") == ["my", "mom", "'s", "car"]


def test_contractions_need_word_boundaries() -> None:
    # "cant" (no apostrophe) and words merely containing the letters stay untouched.
    assert expand_contractions("i cant go to the canteen") == "i cant go to the canteen"
    assert expand_contractions("it'sy") == "it'sy"


def test_moel_scheme_matches_published_outputs() -> None:
    # The released EmpDG/MoEL outputs expand only a fixed list; others stay as split tokens.
    assert normalize("She's sure it's fine, I'll go", scheme="moel") == [
        "she", "'s", "sure", "it", "is", "fine", ",", "i", "'ll", "go",
    ]
    with pytest.raises(ValueError, match="scheme"):
        expand_contractions("x", scheme="nope")


def test_exclamation_and_question_are_split() -> None:
    assert tokenize("sorry to hear!") == ["sorry", "to", "hear", "!"]
    assert normalize("Really?? Wow") == ["really", "?", "?", "wow"]


def test_mid_text_periods_are_split() -> None:
    assert split_sentences("i fell. it hurt") == ["i fell.", "it hurt"]
    assert tokenize("i fell. it hurt") == ["i", "fell", ".", "it", "hurt"]
    assert normalize("I fell... it hurt. A lot!") == ["i", "fell", "...", "it", "hurt", ".", "a", "lot", "!"]


def test_quotes_become_plain_double_quotes() -> None:
    assert normalize('He said "hi" to me.') == ["he", "said", '"', "hi", '"', "to", "me", "."]


def test_normalize_full_pipeline() -> None:
    raw = "Today_comma_ I can't believe it's OVER!  We won\u2019t stop."
    assert normalize(raw) == [
        "today", ",", "i", "can", "not", "believe", "it", "is", "over", "!",
        "we", "will", "not", "stop", ".",
    ]


def test_normalize_is_deterministic_and_handles_empty() -> None:
    raw = "Yeah_comma_ i'm doing alright now_comma_ but with minor injuries."
    assert normalize(raw) == normalize(raw)
    assert normalize("") == []
    assert normalize("   ") == []
