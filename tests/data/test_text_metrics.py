"""Hand-checked values for the pure text metrics, and bleu_4 against sacrebleu."""

from __future__ import annotations

import math
import random

import pytest
import sacrebleu

from empdg.data.text_metrics import (
    bleu_statistics,
    corpus_bleu,
    distinct_n,
    has_repeated_ngram,
    ngrams,
    normalize_reply,
    unique_replies,
)


def _split(lines: list[str]) -> list[list[str]]:
    return [line.split() for line in lines]


def test_ngrams_shorter_than_n_is_empty() -> None:
    assert ngrams(["a", "b"], 3) == []
    assert ngrams(["a", "b", "c"], 2) == [("a", "b"), ("b", "c")]


def test_distinct_is_corpus_level() -> None:
    corpus = _split(["a b a b", "a b c"])
    # unigrams: a b a b a b c -> 7 in all, unique {a, b, c} = 3 -> 300 / 7
    assert distinct_n(corpus, 1) == pytest.approx(300 / 7)
    # bigrams: ab ba ab | ab bc -> 5 in all, unique {ab, ba, bc} = 3 -> 60.0
    # (a per-sentence average would give (2/3 + 2/2) / 2 x 100 = 83.3)
    assert distinct_n(corpus, 2) == pytest.approx(60.0)


def test_distinct_without_ngrams_is_zero() -> None:
    assert distinct_n([], 1) == 0.0
    assert distinct_n(_split(["a", "b"]), 2) == 0.0


def test_bleu_hand_computed() -> None:
    hyp, ref = _split(["the cat sat on the mat"]), _split(["the cat is on the mat"])
    # p1: the x2 (ref has 2), cat, on, mat match; sat does not -> 5/6
    # p2: "the cat", "on the", "the mat" of 5 bigrams -> 3/5
    # p3: only "on the mat" of 4 trigrams -> 1/4;  p4: 0/3;  c = r = 6 -> BP = 1
    scores = corpus_bleu(hyp, ref)
    assert scores["bleu_1"] == pytest.approx(100 * 5 / 6)
    assert scores["bleu_2"] == pytest.approx(100 * math.sqrt(5 / 6 * 3 / 5))  # = 70.71
    assert scores["bleu_3"] == pytest.approx(50.0)  # (5/6 * 3/5 * 1/4) ** (1/3) = 0.125 ** (1/3)
    assert scores["bleu_4"] == 0.0  # zero 4-gram precision, no smoothing


def test_bleu_clips_repeated_matches() -> None:
    matches, totals, hyp_len, ref_len = bleu_statistics(["the", "the", "the"], ["the", "cat"], 2)
    # "the" occurs once in the reference, so only 1 of the 3 hypothesis "the" counts
    assert (matches, totals, hyp_len, ref_len) == ([1, 0], [3, 2], 3, 2)
    assert corpus_bleu([["the", "the", "the"]], [["the", "cat"]])["bleu_1"] == pytest.approx(100 / 3)


def test_bleu_brevity_penalty_is_corpus_level() -> None:
    hyps = _split(["the cat", "a dog runs"])
    refs = _split(["the cat sat on", "a dog runs"])
    # every hypothesis n-gram matches (p1 = 5/5, p2 = 3/3, p3 = 1/1) but c = 5 < r = 7:
    # BP = exp(1 - 7/5) = exp(-0.4) -> 67.03
    scores = corpus_bleu(hyps, refs)
    for key in ("bleu_1", "bleu_2", "bleu_3"):
        assert scores[key] == pytest.approx(100 * math.exp(-0.4))
    assert scores["bleu_4"] == 0.0  # no hypothesis has a 4-gram: undefined precision counts as zero


def test_bleu_no_penalty_when_longer() -> None:
    scores = corpus_bleu(_split(["a b c d e"]), _split(["a b c"]))
    # p1 = 3/5, BP = 1 because the hypothesis is longer than the reference
    assert scores["bleu_1"] == pytest.approx(60.0)


def test_bleu_zero_precision_and_empty_hypothesis() -> None:
    assert corpus_bleu(_split(["x y z"]), _split(["a b c"])) == {f"bleu_{k}": 0.0 for k in range(1, 5)}
    assert corpus_bleu([[]], [["a"]])["bleu_1"] == 0.0
    with pytest.raises(ValueError):
        corpus_bleu([["a"]], [])


def _random_corpus(seed: int, max_len: int) -> tuple[list[str], list[str]]:
    """Random hypotheses; each reference copies its hypothesis with some tokens replaced or added."""
    rng = random.Random(seed)
    vocab = ["i", "am", "so", "sorry", ".", "that", "is", "good", "to", "hear"]
    hyps = [[rng.choice(vocab) for _ in range(rng.randint(1, max_len))] for _ in range(40)]
    refs = [[tok if rng.random() < 0.7 else rng.choice(vocab) for tok in hyp] for hyp in hyps]
    refs = [ref + [rng.choice(vocab) for _ in range(rng.randint(0, 3))] for ref in refs]
    return [" ".join(hyp) for hyp in hyps], [" ".join(ref) for ref in refs]


SACREBLEU_CASES = {
    "hand": (
        ["i am so sorry to hear that .", "that is great ! what happened ?", "oh no , i hope you are ok ."],
        ["i am sorry to hear that . are you ok ?", "that is great news !", "oh no , are you ok now ?"],
    ),
    # the hypotheses are much shorter than the references (BP < 1), several below four tokens
    "short_hyps": (
        ["i am sorry", "that is", "oh no", "i am so sorry to hear that", "good"],
        [
            "i am so sorry to hear that .",
            "that is great",
            "oh no ! what happened ?",
            "i am so sorry to hear",
            "it",
        ],
    ),
    "random_long": _random_corpus(0, 12),
    "random_short": _random_corpus(1, 5),
}


@pytest.mark.parametrize("case", sorted(SACREBLEU_CASES))
def test_bleu_4_equals_sacrebleu(case: str) -> None:
    hyps, refs = SACREBLEU_CASES[case]
    ours = corpus_bleu(_split(hyps), _split(refs))["bleu_4"]
    unsmoothed = sacrebleu.corpus_bleu(hyps, [refs], tokenize="none", force=True, smooth_method="none")
    assert ours == pytest.approx(unsmoothed.score, rel=1e-9, abs=1e-9)
    # sacrebleu's default 'exp' smoothing only differs when some order has no match at all
    assert all(count > 0 for count in unsmoothed.counts), "case must have matches at every order"
    assert ours > 0
    default = sacrebleu.corpus_bleu(hyps, [refs], tokenize="none", force=True)
    assert ours == pytest.approx(default.score, rel=1e-9)


def test_bleu_4_zero_matches_like_unsmoothed_sacrebleu() -> None:
    hyps, refs = ["the cat sat on the mat"], ["the cat is on the mat"]
    expected = sacrebleu.corpus_bleu(hyps, [refs], tokenize="none", force=True, smooth_method="none").score
    assert corpus_bleu(_split(hyps), _split(refs))["bleu_4"] == pytest.approx(expected, abs=1e-9) == 0.0


def test_repeated_trigram_detection() -> None:
    lines = ["i am so sorry . i am so sorry .", "i am so sorry to hear that .", "a b a b"]
    degenerate, fine, abab = _split(lines)
    assert has_repeated_ngram(degenerate)
    assert not has_repeated_ngram(fine)
    # "a b a b" repeats the bigram "a b" but no trigram
    assert not has_repeated_ngram(abab, n=3)
    assert has_repeated_ngram(abab, n=2)
    assert not has_repeated_ngram([], n=3)


def test_unique_replies_after_whitespace_normalisation() -> None:
    replies = [
        "i am so sorry to hear that .",
        "i am so  sorry to hear that . ",  # same reply, extra spaces
        "\ti am so sorry to hear that .\n",  # same reply, tab and newline
        "I am so sorry to hear that .",  # case is kept: a different reply
        "that is great !",
        "",
        "   ",  # blank: the same (empty) reply as ""
    ]
    assert normalize_reply(replies[1]) == replies[0]
    assert normalize_reply(replies[6]) == ""
    # distinct: "i am so sorry ...", "I am so sorry ...", "that is great !", "" -> 4
    assert unique_replies(replies) == 4
    assert unique_replies([]) == 0
