"""Reply valence agreement: MIME's emotion grouping, VADER's threshold, hand-built replies, the registered metric."""

from __future__ import annotations

import pytest

from empdg.data.conversation import EMOTIONS
from empdg.data.corpus_metrics import ScoredExample
from empdg.evaluation.metrics import corpus_figures
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


def test_registered_metrics_match_the_functions() -> None:
    replies, emotions = zip(*REPLIES)
    examples = [ScoredExample(reply, emotion=emotion) for reply, emotion in REPLIES]
    figures = corpus_figures(examples)
    assert {key: figures[key] for key in ("valence_agreement", "valence_neutral_share")} == valence_agreement(
        replies, emotions
    )
    # "that is great !" twice: 4 distinct of 5
    assert figures["unique_replies"] == 4 and figures["unique_reply_share"] == 0.8
    # whitespace is folded: 2 distinct of 4
    folded = corpus_figures([ScoredExample(r) for r in ["that is great !", "that  is great !", "what happened ?"] * 2])
    assert (folded["unique_replies"], folded["unique_reply_share"]) == (2, 2 / 6)
    # an emotion outside the 32: no polarity group, so no valence agreement (said once), the rest still scored
    with pytest.warns(UserWarning, match="valence_agreement not computed: 'bored' is not one of the 32"):
        unfit = corpus_figures([ScoredExample("great !", emotion="bored")])
    assert "valence_agreement" not in unfit and unfit["unique_replies"] == 1


def test_vader_lexicon_ships_with_the_package() -> None:
    from pathlib import Path

    import vaderSentiment.vaderSentiment as vader

    folder = Path(vader.__file__).parent
    assert (folder / "vader_lexicon.txt").stat().st_size > 100_000
    analyzer = vader.SentimentIntensityAnalyzer()  # reads the bundled files, no download
    assert analyzer.lexicon["great"] > 0 > analyzer.lexicon["terrible"]
