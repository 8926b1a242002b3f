"""Pure text functions over whitespace-token lists: the building blocks of the registered metrics.

The per-example statistics (n-grams, BLEU's clipped matches, repeated n-grams, normalised replies) and the
BLEU formula that :mod:`empdg.data.corpus_metrics` aggregates; ``distinct_n`` and ``corpus_bleu`` are the
plain whole-corpus forms, which the tests hold the registered metrics to.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

__all__ = [
    "bleu_from_statistics",
    "bleu_statistics",
    "corpus_bleu",
    "distinct_n",
    "has_repeated_ngram",
    "ngrams",
    "normalize_reply",
    "unique_replies",
]


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    """All contiguous n-grams of ``tokens`` in order (empty when the sequence is shorter than n)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(token_lists: Sequence[Sequence[str]], n: int) -> float:
    """Corpus-level Distinct-n: unique n-grams / all n-grams x 100 (0.0 when there are none).

    Corpus level (not averaged per response) because that is how EmpDG and MoEL report it.
    """
    seen: set[tuple[str, ...]] = set()
    total = 0
    for tokens in token_lists:
        grams = ngrams(tokens, n)
        seen.update(grams)
        total += len(grams)
    return 100.0 * len(seen) / total if total else 0.0


def bleu_statistics(
    hyp: Sequence[str], ref: Sequence[str], max_order: int = 4
) -> tuple[list[int], list[int], int, int]:
    """Sufficient statistics of one pair: (clipped matches[k], hyp n-gram totals[k], hyp_len, ref_len).

    Index k holds order k + 1. Summing these over a corpus (or over DDP ranks) gives corpus BLEU.
    """
    matches = [0] * max_order
    totals = [0] * max_order
    for k in range(max_order):
        hyp_counts = Counter(ngrams(hyp, k + 1))
        ref_counts = Counter(ngrams(ref, k + 1))
        matches[k] = sum(min(count, ref_counts[gram]) for gram, count in hyp_counts.items())
        totals[k] = sum(hyp_counts.values())
    return matches, totals, len(hyp), len(ref)


def bleu_from_statistics(
    matches: Sequence[float], totals: Sequence[float], hyp_len: float, ref_len: float
) -> dict[str, float]:
    """BLEU-1..N on the 0-100 scale from summed statistics, without smoothing.

    BLEU-n = BP * exp(mean_{k<=n} log p_k); any zero (or undefined) p_k up to n makes BLEU-n 0.0.
    """
    if len(matches) != len(totals):
        raise ValueError("matches and totals must have one entry per n-gram order")
    brevity = 1.0 if hyp_len >= ref_len else math.exp(1.0 - ref_len / hyp_len) if hyp_len > 0 else 0.0
    scores: dict[str, float] = {}
    log_sum = 0.0
    zero = False
    for k, (match, total) in enumerate(zip(matches, totals)):
        if match <= 0 or total <= 0:
            zero = True
        else:
            log_sum += math.log(match / total)
        order = k + 1
        scores[f"bleu_{order}"] = 0.0 if zero else 100.0 * brevity * math.exp(log_sum / order)
    return scores


def corpus_bleu(hyps: Sequence[Sequence[str]], refs: Sequence[Sequence[str]], max_order: int = 4) -> dict[str, float]:
    """Corpus BLEU-1..max_order with one reference per hypothesis (bleu_4 matches sacrebleu 'none')."""
    if len(hyps) != len(refs):
        raise ValueError(f"got {len(hyps)} hypotheses but {len(refs)} references")
    matches = [0] * max_order
    totals = [0] * max_order
    hyp_len = ref_len = 0
    for hyp, ref in zip(hyps, refs):
        m, t, h, r = bleu_statistics(hyp, ref, max_order)
        matches = [a + b for a, b in zip(matches, m)]
        totals = [a + b for a, b in zip(totals, t)]
        hyp_len += h
        ref_len += r
    return bleu_from_statistics(matches, totals, hyp_len, ref_len)


def has_repeated_ngram(tokens: Sequence[str], n: int = 3) -> bool:
    """True when some n-gram occurs twice, the "i am so sorry . i am so sorry ." degeneration."""
    grams = ngrams(tokens, n)
    return len(set(grams)) < len(grams)


def normalize_reply(text: str) -> str:
    """A reply with runs of whitespace collapsed to one space and no leading/trailing space.

    Only whitespace is normalised: case and punctuation are kept, so "Sorry ." and "sorry ." differ.
    """
    return " ".join(text.split())


def unique_replies(replies: Sequence[str]) -> int:
    """Number of distinct replies after :func:`normalize_reply` (a collapse detector: a generator that says
    "i am so sorry to hear that ." to everyone has a Distinct-n that barely moves but one unique reply)."""
    return len({normalize_reply(reply) for reply in replies})
