"""One training example per listener turn: context before it, the reply, and the user's feedback."""

from __future__ import annotations

from empdg.data.conversation import EMOTION_TO_ID, Conversation
from empdg.data.emotion_words import get_lexicon
from empdg.data.examples import LISTENER, SPEAKER, build_examples, listener_turns
from empdg.data.text import normalize

UTTERANCES = [
    "I was so afraid when the storm hit last night.",  # 0 speaker
    "Oh no, that sounds terrible! Were you alone?",  # 1 listener
    "Yes, and the power went out too.",  # 2 speaker
    "I'm glad you are safe now.",  # 3 listener
    "Thanks, I am happy and grateful today.",  # 4 speaker
]


def _conversation(utterances: list[str] = UTTERANCES) -> Conversation:
    return Conversation(conv_id="c1", emotion="afraid", situation="A storm at night.", utterances=list(utterances))


def _build(conversations: list[Conversation]):
    lexicon = get_lexicon()
    return build_examples(conversations, normalize, lexicon.emotion_words, lexicon.emotion_mask)


def test_listener_turns_are_the_odd_positions() -> None:
    assert list(listener_turns(_conversation())) == [1, 3]
    assert list(listener_turns(_conversation(UTTERANCES[:4]))) == [1, 3]
    assert list(listener_turns(_conversation(UTTERANCES[:1]))) == []


def test_one_example_per_listener_turn_with_context_target_feedback() -> None:
    examples = _build([_conversation()])
    tokens = [normalize(u) for u in UTTERANCES]
    assert [e.example_id for e in examples] == ["c1#1", "c1#3"]

    first, second = examples
    assert first.context == tokens[:1]
    assert first.target == tokens[1]
    assert first.feedback == tokens[2]
    assert second.context == tokens[:3]
    assert second.target == tokens[3]
    assert second.feedback == tokens[4]
    for example in examples:
        assert example.has_feedback
        assert example.context_roles[-1] == SPEAKER  # the context ends on the speaker
        assert example.context_roles == [SPEAKER if i % 2 == 0 else LISTENER for i in range(len(example.context))]
        assert example.emotion == EMOTION_TO_ID["afraid"]
        assert example.situation == normalize("A storm at night.")
    assert second.context_roles == [SPEAKER, LISTENER, SPEAKER]


def test_last_listener_turn_without_feedback_is_kept_and_flagged() -> None:
    examples = _build([_conversation(UTTERANCES[:4])])
    assert len(examples) == 2
    last = examples[-1]
    assert last.target == normalize(UTTERANCES[3])
    assert last.feedback is None
    assert not last.has_feedback
    assert last.feedback_emotion_words == []
    assert examples[0].has_feedback


def test_emotion_words_of_context_target_and_feedback() -> None:
    lexicon = get_lexicon()
    examples = _build([_conversation()])
    first, second = examples
    tokens = [normalize(u) for u in UTTERANCES]

    # context words: the emotion words of all context utterances, in order, repeats kept
    assert first.context_emotion_words == ["afraid", "storm", "hit"]
    assert first.context_emotion_words == [w for utt in tokens[:1] for w in utt if lexicon.is_emotion_word(w)]
    assert second.context_emotion_words == [w for utt in tokens[:3] for w in utt if lexicon.is_emotion_word(w)]
    assert second.context_emotion_words[:3] == ["afraid", "storm", "hit"]
    assert "terrible" in second.context_emotion_words  # from the listener's earlier turn
    # target: a 0/1 mask aligned with the target tokens
    assert len(second.target_emotion_mask) == len(second.target)
    assert second.target_emotion_mask == [int(lexicon.is_emotion_word(w)) for w in second.target]
    assert len(first.target_emotion_mask) == len(first.target)
    assert first.target_emotion_mask[first.target.index("terrible")] == 1
    assert first.target_emotion_mask[first.target.index("oh")] == 0  # a stop word
    # feedback: the emotion words of the next speaker utterance
    assert second.feedback_emotion_words == lexicon.emotion_words(tokens[4])
    assert second.feedback_emotion_words == ["happy", "grateful"]


def test_each_conversation_is_independent() -> None:
    other = Conversation("c2", "joyful", "", ["I got the job!", "Congratulations!"])
    examples = _build([_conversation(), other])
    assert [e.example_id for e in examples] == ["c1#1", "c1#3", "c2#1"]
    assert examples[-1].emotion == EMOTION_TO_ID["joyful"]
    assert examples[-1].context == [normalize("I got the job!")]
    assert examples[-1].situation == []
    assert not examples[-1].has_feedback
