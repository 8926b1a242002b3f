"""Reply valence agreement: does the reply's sentiment (VADER) have the polarity of the user's emotion?

The 32 EmpatheticDialogues emotions are split into a positive and a negative group exactly as MIME does
(:mod:`empdg.data.emotion_polarity`: 13 positive, 19 negative).

A reply agrees when VADER's compound score is ``>= +VADER_THRESHOLD`` for a positive-group emotion or
``<= -VADER_THRESHOLD`` for a negative-group one. 0.05 is the threshold VADER's authors recommend for calling
a text positive/negative (Hutto & Gilbert, ICWSM 2014; the vaderSentiment README); replies in between are
*neutral* and never agree ("what happened ?" scores 0.0). ``valence_neutral_share`` reports how many there
are, so a low agreement caused by bland replies is told apart from one caused by replies of the wrong sign.

VADER's lexicon ships inside the ``vaderSentiment`` package: scoring needs no download. The metric itself
(scoring and the threshold) is the registered :class:`~empdg.data.corpus_metrics.ValenceAgreement`, which
validation, the evaluation and the bootstrap share; this module names its parts for the docs and the tests.
"""

from __future__ import annotations

from collections.abc import Sequence

from empdg.data.corpus_metrics import (
    VADER_THRESHOLD,
    CorpusStatistics,
    ScoredExample,
    ValenceAgreement,
    compound_scores,
    valence_outcome,
)
from empdg.data.emotion_polarity import NEGATIVE_EMOTIONS, POSITIVE_EMOTIONS, emotion_polarity

__all__ = [
    "NEGATIVE_EMOTIONS",
    "POSITIVE_EMOTIONS",
    "VADER_THRESHOLD",
    "compound_scores",
    "emotion_polarity",
    "valence_agreement",
    "valence_outcome",
]


def valence_agreement(
    replies: Sequence[str], emotions: Sequence[str], threshold: float = VADER_THRESHOLD
) -> dict[str, float]:
    """``valence_agreement`` and ``valence_neutral_share`` (both shares 0..1 of all replies; 0.0 when empty):
    the registered metric (:class:`~empdg.data.corpus_metrics.ValenceAgreement`) on these replies alone."""
    if len(replies) != len(emotions):
        raise ValueError(f"got {len(replies)} replies but {len(emotions)} emotions")
    metric = ValenceAgreement(threshold)
    statistics = CorpusStatistics([ScoredExample(r, emotion=e) for r, e in zip(replies, emotions)], {"v": metric})
    if statistics.problems:
        raise ValueError(statistics.problems["v"])
    return statistics.point() or dict.fromkeys(metric.keys, 0.0)
