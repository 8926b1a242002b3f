"""Reply valence agreement: does the reply's sentiment (VADER) have the polarity of the user's emotion?

The 32 EmpatheticDialogues emotions are split into a positive and a negative group exactly as MIME does
(:mod:`empdg.data.emotion_polarity`: 13 positive, 19 negative).

A reply agrees when VADER's compound score is ``>= +VADER_THRESHOLD`` for a positive-group emotion or
``<= -VADER_THRESHOLD`` for a negative-group one. 0.05 is the threshold VADER's authors recommend for calling
a text positive/negative (Hutto & Gilbert, ICWSM 2014; the vaderSentiment README); replies in between are
*neutral* and never agree ("what happened ?" scores 0.0). ``valence_neutral_share`` reports how many there
are, so a low agreement caused by bland replies is told apart from one caused by replies of the wrong sign.

VADER's lexicon ships inside the ``vaderSentiment`` package: scoring needs no download.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

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

#: |compound| below this is neutral (VADER's recommended cut-off).
VADER_THRESHOLD = 0.05


@lru_cache(maxsize=1)
def _analyzer():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def compound_scores(texts: Sequence[str]) -> list[float]:
    """VADER compound score (-1..1) of each text, in order."""
    analyzer = _analyzer()
    return [float(analyzer.polarity_scores(text)["compound"]) for text in texts]


def valence_outcome(compound: float, emotion: str, threshold: float = VADER_THRESHOLD) -> tuple[bool, bool]:
    """(agrees, neutral) of one reply: its compound score against the gold emotion's polarity group."""
    neutral = -threshold < compound < threshold
    if neutral:
        return False, True
    return (compound > 0) == (emotion_polarity(emotion) > 0), False


def valence_agreement(
    replies: Sequence[str], emotions: Sequence[str], threshold: float = VADER_THRESHOLD
) -> dict[str, float]:
    """``valence_agreement`` and ``valence_neutral_share`` (both shares 0..1 of all replies; 0.0 when empty)."""
    if len(replies) != len(emotions):
        raise ValueError(f"got {len(replies)} replies but {len(emotions)} emotions")
    outcomes = [valence_outcome(c, e, threshold) for c, e in zip(compound_scores(replies), emotions)]
    n = max(len(outcomes), 1)
    return {
        "valence_agreement": sum(agree for agree, _ in outcomes) / n,
        "valence_neutral_share": sum(neutral for _, neutral in outcomes) / n,
    }
