"""The raw unit every data source produces: one conversation with its emotion label.

Both the official EmpatheticDialogues reader and the built-in demonstration corpus return
``Conversation`` objects, so everything downstream (examples, vocabulary, batches) is shared.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: The 32 EmpatheticDialogues emotion labels, in a fixed (alphabetical) order: label id = index.
EMOTIONS: tuple[str, ...] = (
    "afraid", "angry", "annoyed", "anticipating", "anxious", "apprehensive", "ashamed", "caring",
    "confident", "content", "devastated", "disappointed", "disgusted", "embarrassed", "excited",
    "faithful", "furious", "grateful", "guilty", "hopeful", "impressed", "jealous", "joyful",
    "lonely", "nostalgic", "prepared", "proud", "sad", "sentimental", "surprised", "terrified",
    "trusting",
)
EMOTION_TO_ID: dict[str, int] = {name: i for i, name in enumerate(EMOTIONS)}

SPLITS: tuple[str, ...] = ("train", "valid", "test")


@dataclass
class Conversation:
    """One dialogue: utterances alternate speaker (index 0, 2, ...) and listener (1, 3, ...).

    Utterances are raw text with ``_comma_`` already restored; normalisation happens later so
    that the cache key can include the normalisation settings.
    """

    conv_id: str
    emotion: str
    situation: str
    utterances: list[str] = field(default_factory=list)
