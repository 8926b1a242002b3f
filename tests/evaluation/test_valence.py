"""Reply valence agreement: MIME's emotion grouping, VADER's threshold, hand-built replies, the metric class."""

from __future__ import annotations

import pytest

from empdg.data.conversation import EMOTIONS
from empdg.evaluation.metrics import ReplyMetrics, UniqueReplies, ValenceAgreement
from empdg.evaluation.valence import (
    NEGATIVE_EMOTIONS,
    POSITIVE_EMOTIONS,
    VADER_THRESHOLD,
    compound_scores,
    emotion_polarity,
    valence_agreement,
    valence_outcome,
)

# MIME's label order (declare-lab/MIME, utils/data_loader.py: emo_map) and its positive label indices
# (model/VAE_noEmo_posterior.py and model/trainer.py: positive_emotions)
MIME_EMO_MAP = [
    "surprised", "excited", "annoyed", "proud", "angry", "sad", "grateful", "lonely",
    "impressed", "afraid", "disgusted", "confident", "terrified", "hopeful", "anxious", "disappointed",
    "joyful", "prepared", "guilty", "furious", "nostalgic", "jealous", "anticipating", "embarrassed",
    "content", "devastated", "sentimental", "caring", "trusting", "ashamed", "apprehensive", "faithful",
]  # fmt: skip
MIME_POSITIVE_IDS = [11, 16, 6, 8, 3, 1, 28, 13, 31, 17, 24, 0, 27]

# hand-built replies; VADER compound scores (vaderSentiment 3.3) in the comments
REPLIES = [
    ("that is great !", "joyful"),  # +0.6588, positive emotion: agrees
    ("that is great !", "sad"),  # +0.6588, negative emotion: disagrees
    ("i am so sorry to hear that .", "sad"),  # -0.188, negative emotion: agrees
    ("what happened ?", "afraid"),  # 0.0: neutral, never agrees
    ("oh no , that is terrible .", "excited"),  # -0.6486, positive emotion: disagrees
]


def test_grouping_is_mimes() -> None:
    assert set(MIME_EMO_MAP) == set(EMOTIONS)
    assert {MIME_EMO_MAP[i] for i in MIME_POSITIVE_IDS} == POSITIVE_EMOTIONS
    assert len(POSITIVE_EMOTIONS) == 13 and len(NEGATIVE_EMOTIONS) == 19
    assert set(EMOTIONS) == POSITIVE_EMOTIONS | NEGATIVE_EMOTIONS
    assert not POSITIVE_EMOTIONS & NEGATIVE_EMOTIONS
    # MIME counts these as negative ("anticipation is negative"), sentimental too
    assert {"anticipating", "nostalgic", "sentimental"} <= NEGATIVE_EMOTIONS
    assert emotion_polarity("proud") == 1 and emotion_polarity("nostalgic") == -1
    assert emotion_polarity(" Joyful ") == 1
    with pytest.raises(ValueError, match="happy"):
        emotion_polarity("happy")


def test_threshold_boundaries() -> None:
    assert VADER_THRESHOLD == 0.05
    assert valence_outcome(0.05, "joyful") == (True, False)  # >= +0.05 counts
    assert valence_outcome(0.0499, "joyful") == (False, True)  # neutral band
    assert valence_outcome(-0.0499, "sad") == (False, True)
    assert valence_outcome(-0.05, "sad") == (True, False)  # <= -0.05 counts
    assert valence_outcome(-0.05, "joyful") == (False, False)  # wrong sign, not neutral
    assert valence_outcome(0.3, "sad", threshold=0.5) == (False, True)


def test_hand_built_replies() -> None:
    compounds = compound_scores([reply for reply, _ in REPLIES])
    assert compounds == pytest.approx([0.6588, 0.6588, -0.188, 0.0, -0.6486], abs=1e-4)
    scores = valence_agreement(*zip(*REPLIES))
    # agree: 1 and 3 -> 2/5; neutral: 4 -> 1/5
    assert scores == pytest.approx({"valence_agreement": 0.4, "valence_neutral_share": 0.2})
    assert valence_agreement([], []) == {"valence_agreement": 0.0, "valence_neutral_share": 0.0}
    with pytest.raises(ValueError):
        valence_agreement(["a"], [])


def test_metric_classes_match_the_functions() -> None:
    replies, emotions = zip(*REPLIES)
    metric = ValenceAgreement()
    metric.update(replies[:2], emotions[:2])
    metric.update(replies[2:], emotions[2:])
    assert metric.compute() == pytest.approx(valence_agreement(replies, emotions))

    unique = UniqueReplies()
    unique.update(["that is great !", "that  is great !"])
    unique.update(["that is great !", "what happened ?"])
    # 4 replies, 2 distinct after whitespace normalisation (across updates)
    assert unique.compute() == {"unique_replies": 2.0, "unique_reply_share": 0.5}
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert UniqueReplies().compute() == {"unique_replies": 0.0, "unique_reply_share": 0.0}

    bundle = ReplyMetrics()
    bundle.update(replies, emotions)
    result = bundle.compute()
    assert list(result) == ["unique_replies", "unique_reply_share", "valence_agreement", "valence_neutral_share"]
    # "that is great !" twice: 4 distinct of 5
    assert result["unique_replies"] == 4.0 and result["unique_reply_share"] == pytest.approx(0.8)
    assert result["valence_agreement"] == pytest.approx(0.4)
    bundle.reset()
    bundle.update(["i see ."], ["caring"])
    assert bundle.compute()["valence_neutral_share"] == 1.0


def test_vader_lexicon_ships_with_the_package() -> None:
    from pathlib import Path

    import vaderSentiment.vaderSentiment as vader

    folder = Path(vader.__file__).parent
    assert (folder / "vader_lexicon.txt").stat().st_size > 100_000
    analyzer = vader.SentimentIntensityAnalyzer()  # reads the bundled files, no download
    assert analyzer.lexicon["great"] > 0 > analyzer.lexicon["terrible"]
