"""Encode normalised examples as id sequences and collate them into padded batches.

Batch conventions (used by every model and loss):
- ``*_pad_mask`` is a bool tensor, True at padding (PyTorch's key-padding convention);
- the semantic sequence is ``[CLS] u_1 ... u_k`` with a dialogue-state id per position
  (``[CLS]`` for the summary slot, ``[SPK]``/``[LST]`` for each utterance's tokens);
- the emotion sequence is ``[LAB] w_1 ... w_e`` over the context's emotion words;
- targets end with ``[EOS]``; ``*_ext_ids`` index an extended vocabulary in which a context word
  missing from the vocabulary gets id ``len(vocab) + k`` (its position in ``oovs``), so the copy
  mechanism can reproduce it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from empdg.data.examples import SPEAKER, DialogueExample
from empdg.data.vocab import CLS_ID, EOS_ID, LAB_ID, LST_ID, PAD_ID, SPK_ID, UNK_ID, Vocab


@dataclass(frozen=True)
class SequenceLimits:
    max_context_len: int = 256
    max_target_len: int = 64
    max_emotion_words: int = 64

    def __post_init__(self) -> None:
        for name in ("max_context_len", "max_target_len", "max_emotion_words"):
            if getattr(self, name) < 2:
                raise ValueError(f"data.{name} must be at least 2, got {getattr(self, name)}")


@dataclass
class EncodedExample:
    example_id: str
    emotion: int
    context_ids: list[int]
    context_state: list[int]
    context_ext_ids: list[int]
    oovs: list[str]
    emotion_context_ids: list[int]
    target_ids: list[int]
    target_ext_ids: list[int]
    target_emotion_mask: list[float]
    feedback_ids: list[int]
    feedback_emotion_ids: list[int]
    has_feedback: bool


def _pieces(words: list[str], vocab: Vocab) -> tuple[list[int], list[int]]:
    """Every word's ids (one per word, or a word's subword pieces) and the index of the word each came from."""
    ids: list[int] = []
    owners: list[int] = []
    for index, word in enumerate(words):
        pieces = vocab.pieces(word)
        ids.extend(pieces)
        owners.extend([index] * len(pieces))
    return ids, owners


def encode_example(example: DialogueExample, vocab: Vocab, limits: SequenceLimits) -> EncodedExample:
    """Truncate from the left for the context (recent turns matter most), from the right for replies.

    With a subword vocabulary every word becomes its pieces (each piece inherits the word's state and
    emotion flag) and every utterance starts with its speaker's [SPK]/[LST] id (``vocab.turn_markers``).
    """
    words: list[str] = []
    ids: list[int] = []
    states: list[int] = []
    for role, utterance in zip(example.context_roles, example.context):
        state = SPK_ID if role == SPEAKER else LST_ID
        if vocab.turn_markers:
            words.append("")
            ids.append(state)
            states.append(state)
        pieces, owners = _pieces(utterance, vocab)
        words.extend(utterance[i] for i in owners)
        ids.extend(pieces)
        states.extend([state] * len(pieces))
    keep = limits.max_context_len - 1
    words, ids, states = words[-keep:], ids[-keep:], states[-keep:]
    context_ids = [CLS_ID] + ids
    oovs: list[str] = []
    context_ext = [CLS_ID]
    for word, wid in zip(words, ids):
        if wid == UNK_ID:
            if word not in oovs:
                oovs.append(word)
            wid = len(vocab) + oovs.index(word)
        context_ext.append(wid)

    target_pieces, target_owners = _pieces(example.target, vocab)
    target_pieces = target_pieces[: limits.max_target_len - 1]
    target_owners = target_owners[: len(target_pieces)]
    target_words = [example.target[i] for i in target_owners]
    target_ids = target_pieces + [EOS_ID]
    target_ext = [
        len(vocab) + oovs.index(w) if tid == UNK_ID and w in oovs else tid
        for w, tid in zip(target_words, target_ids)
    ] + [EOS_ID]
    emotion_mask = [float(example.target_emotion_mask[i]) for i in target_owners] + [0.0]

    emotion_words = vocab.encode(example.context_emotion_words)[-(limits.max_emotion_words - 1) :]
    feedback = vocab.encode(example.feedback or [])[: limits.max_target_len - 1]
    return EncodedExample(
        example_id=example.example_id,
        emotion=example.emotion,
        context_ids=context_ids,
        context_state=[CLS_ID] + states,
        context_ext_ids=context_ext,
        oovs=oovs,
        emotion_context_ids=[LAB_ID] + emotion_words,
        target_ids=target_ids,
        target_ext_ids=target_ext,
        target_emotion_mask=emotion_mask,
        feedback_ids=feedback + [EOS_ID] if feedback else [],
        feedback_emotion_ids=vocab.encode(example.feedback_emotion_words)[: limits.max_emotion_words],
        has_feedback=example.has_feedback,
    )


# data.bucket_by: what the training sampler sorts each bucket by
BUCKET_KEYS = ("context_reply", "longest")


def bucket_length(item: EncodedExample, by: str = "context_reply") -> int:
    """The length the training sampler buckets ``item`` by (``data.bucket_by``).

    ``context_reply``: the context's and the reply's ids summed, what the generator reads and writes (every
    study here ran with it; the next utterance is left out). ``longest``: the longest of the context, the reply
    and the next utterance, which the critics read too: one key cannot sort three widths, and sorting by the
    widest keeps each batch's widest field close to its members' (on the ED sample it pads the next utterance a
    third less at batch 16 and the generator's fields no more, yet the updates took as long on a CPU; docs/gpu.md).
    """
    if by == "context_reply":
        return len(item.context_ids) + len(item.target_ids)
    if by == "longest":
        return max(len(item.context_ids), len(item.target_ids), len(item.feedback_ids))
    raise ValueError(f"data.bucket_by={by!r}: choose one of {BUCKET_KEYS}")


class EncodedDataset(Dataset):
    """A list of encoded examples; lengths (``bucket_by``: :func:`bucket_length`) are exposed for
    length-bucketed sampling."""

    def __init__(
        self,
        examples: Sequence[DialogueExample],
        vocab: Vocab,
        limits: SequenceLimits,
        bucket_by: str = "context_reply",
    ):
        self.items = [encode_example(e, vocab, limits) for e in examples]
        self.lengths = [bucket_length(item, bucket_by) for item in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> EncodedExample:
        return self.items[index]


def _pad(rows: Sequence[Sequence[float]], dtype: torch.dtype, value: float = PAD_ID) -> torch.Tensor:
    width = max(1, max((len(r) for r in rows), default=1))
    out = torch.full((len(rows), width), value, dtype=dtype)
    for i, row in enumerate(rows):
        if row:
            out[i, : len(row)] = torch.tensor(row, dtype=dtype)
    return out


def collate(items: Sequence[EncodedExample]) -> dict[str, object]:
    """Pad every sequence field to the longest in the batch and derive its padding mask."""
    batch: dict[str, object] = {}
    for field in (
        "context_ids",
        "context_state",
        "context_ext_ids",
        "emotion_context_ids",
        "target_ids",
        "target_ext_ids",
        "feedback_ids",
        "feedback_emotion_ids",
    ):
        batch[field] = _pad([getattr(it, field) for it in items], torch.long)
    for name in ("context", "emotion_context", "target", "feedback", "feedback_emotion"):
        batch[f"{name}_pad_mask"] = batch[f"{name}_ids"].eq(PAD_ID)
    batch["target_emotion_mask"] = _pad([it.target_emotion_mask for it in items], torch.float, 0.0)
    batch["emotion_label"] = torch.tensor([it.emotion for it in items], dtype=torch.long)
    batch["has_feedback"] = torch.tensor([it.has_feedback for it in items], dtype=torch.bool)
    batch["max_oov"] = max((len(it.oovs) for it in items), default=0)
    batch["oovs"] = [it.oovs for it in items]
    batch["example_ids"] = [it.example_id for it in items]
    return batch


def batch_to_device(batch: dict, device: torch.device | str) -> dict:
    """A :func:`collate` batch with its tensors on ``device`` (the lists of OOV words and ids stay as they are)."""
    return {key: value.to(device) if isinstance(value, torch.Tensor) else value for key, value in batch.items()}
