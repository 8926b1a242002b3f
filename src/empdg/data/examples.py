"""Turn conversations into training examples: one per listener turn.

A conversation alternates speaker (the person who lived the situation, index 0) and listener.
For listener turn ``t`` the context is every utterance before ``t`` (so it ends on the speaker),
the target is utterance ``t`` and the feedback is utterance ``t + 1`` -- the user's reaction that
EmpDG's interactive critics read -- when it exists. Examples without feedback are kept for
generator training and flagged so the critics can skip them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from empdg.data.conversation import EMOTION_TO_ID, Conversation

SPEAKER, LISTENER = 0, 1


@dataclass
class DialogueExample:
    """A normalised example; every text field is a list of tokens."""

    example_id: str
    emotion: int
    situation: list[str]
    context: list[list[str]]
    context_roles: list[int]
    target: list[str]
    feedback: list[str] | None
    context_emotion_words: list[str]
    target_emotion_mask: list[int]
    feedback_emotion_words: list[str]

    @property
    def has_feedback(self) -> bool:
        return self.feedback is not None and len(self.feedback) > 0


def listener_turns(conversation: Conversation) -> Iterable[int]:
    """Indices of listener utterances (odd positions); the speaker always opens."""
    return range(1, len(conversation.utterances), 2)


def build_examples(
    conversations: Iterable[Conversation],
    normalize: Callable[[str], list[str]],
    emotion_words: Callable[[list[str]], list[str]],
    emotion_mask: Callable[[list[str]], list[int]],
) -> list[DialogueExample]:
    """Build one example per listener turn, normalising each utterance exactly once."""
    examples: list[DialogueExample] = []
    for conv in conversations:
        tokens = [normalize(u) for u in conv.utterances]
        situation = normalize(conv.situation) if conv.situation else []
        label = EMOTION_TO_ID[conv.emotion]
        for t in listener_turns(conv):
            context = tokens[:t]
            feedback = tokens[t + 1] if t + 1 < len(tokens) else None
            context_words = [w for utt in context for w in emotion_words(utt)]
            examples.append(
                DialogueExample(
                    example_id=f"{conv.conv_id}#{t}",
                    emotion=label,
                    situation=situation,
                    context=context,
                    context_roles=[SPEAKER if i % 2 == 0 else LISTENER for i in range(t)],
                    target=tokens[t],
                    feedback=feedback,
                    context_emotion_words=context_words,
                    target_emotion_mask=emotion_mask(tokens[t]),
                    feedback_emotion_words=emotion_words(feedback) if feedback else [],
                )
            )
    return examples
