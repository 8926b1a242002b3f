"""The positive/negative grouping of the 32 EmpatheticDialogues emotions, as MIME groups them.

MIME (Majumder et al., "MIME: MIMicking Emotions for Empathetic Response Generation", EMNLP 2020; code
github.com/declare-lab/MIME, ``model/VAE_noEmo_posterior.py`` and ``model/trainer.py``) marks the label
indices ``positive_emotions = [11, 16, 6, 8, 3, 1, 28, 13, 31, 17, 24, 0, 27]`` of its ``emo_map`` as
positive: 13 emotions. The other 19 are negative -- including *anticipating* and *nostalgic*, which
MIME's code marks negative on purpose ("anticipation is negative"), and *sentimental*.

It lives with the data because two layers read it: MIME's generator (emotion mimicry per group) and
the evaluation's reply valence agreement.
"""

from __future__ import annotations

from empdg.data.conversation import EMOTIONS

__all__ = ["NEGATIVE_EMOTIONS", "POSITIVE_EMOTIONS", "emotion_polarity", "positive_emotion_ids"]

#: MIME's positive group (13 emotions); every other ED emotion is negative.
POSITIVE_EMOTIONS: frozenset[str] = frozenset(
    {
        "confident", "joyful", "grateful", "impressed", "proud", "excited", "trusting",
        "hopeful", "faithful", "prepared", "content", "surprised", "caring",
    }
)  # fmt: skip
#: MIME's negative group: the other 19 of the 32 ED emotions.
NEGATIVE_EMOTIONS: frozenset[str] = frozenset(EMOTIONS) - POSITIVE_EMOTIONS


def emotion_polarity(emotion: str) -> int:
    """+1 for MIME's positive group, -1 for its negative group; ValueError for a name outside the 32."""
    name = emotion.strip().lower()
    if name in POSITIVE_EMOTIONS:
        return 1
    if name in NEGATIVE_EMOTIONS:
        return -1
    raise ValueError(f"{emotion!r} is not one of the 32 EmpatheticDialogues emotions")


def positive_emotion_ids() -> tuple[int, ...]:
    """The label ids (this project's emotion order, ``EMOTIONS``) of the positive group, ascending."""
    return tuple(i for i, name in enumerate(EMOTIONS) if name in POSITIVE_EMOTIONS)
