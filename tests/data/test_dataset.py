"""Encoding examples as ids, padding them into batches, and the length-bucketed batch sampler."""

from __future__ import annotations

import pytest
import torch

from empdg.data.dataset import EncodedDataset, SequenceLimits, collate, encode_example
from empdg.data.examples import LISTENER, SPEAKER, DialogueExample
from empdg.data.sampler import BucketBatchSampler
from empdg.data.vocab import CLS_ID, EOS_ID, LAB_ID, LST_ID, PAD_ID, SPECIAL_TOKENS, SPK_ID, UNK_ID, Vocab

WORDS = ["i", "lost", "my", "dog", "so", "sad", "sorry", "to", "hear", "that", "thanks", "."]
VOCAB = Vocab(list(SPECIAL_TOKENS) + WORDS)


def _example(
    context: list[list[str]] | None = None,
    target: list[str] | None = None,
    feedback: list[str] | None = None,
    emotion_words: list[str] | None = None,
) -> DialogueExample:
    context = context if context is not None else [["i", "lost", "my", "dog"], ["so", "sad"], ["i", "miss", "rex"]]
    target = target if target is not None else ["sorry", "to", "hear", "that", "rex", "."]
    return DialogueExample(
        example_id="x#1",
        emotion=27,
        situation=[],
        context=context,
        context_roles=[SPEAKER if i % 2 == 0 else LISTENER for i in range(len(context))],
        target=target,
        feedback=feedback,
        context_emotion_words=emotion_words if emotion_words is not None else ["lost", "sad"],
        target_emotion_mask=[0] * len(target),
        feedback_emotion_words=[],
    )


def test_context_starts_with_cls_and_has_dialogue_states() -> None:
    enc = encode_example(_example(), VOCAB, SequenceLimits())
    words = ["i", "lost", "my", "dog", "so", "sad", "i", "miss", "rex"]
    assert enc.context_ids[0] == CLS_ID
    assert enc.context_ids[1:] == VOCAB.encode(words)
    assert enc.context_state == [CLS_ID] + [SPK_ID] * 4 + [LST_ID] * 2 + [SPK_ID] * 3
    assert len(enc.context_state) == len(enc.context_ids) == len(enc.context_ext_ids)


def test_context_is_truncated_from_the_left() -> None:
    enc = encode_example(_example(), VOCAB, SequenceLimits(max_context_len=4))
    assert len(enc.context_ids) == 4
    assert enc.context_ids[0] == CLS_ID  # the summary slot survives truncation
    assert enc.context_ids[1:] == VOCAB.encode(["i", "miss", "rex"])  # the most recent words
    assert enc.context_state == [CLS_ID, SPK_ID, SPK_ID, SPK_ID]
    enc = encode_example(_example(), VOCAB, SequenceLimits(max_context_len=6))
    assert enc.context_ids[1:] == VOCAB.encode(["so", "sad", "i", "miss", "rex"])
    assert enc.context_state == [CLS_ID, LST_ID, LST_ID, SPK_ID, SPK_ID, SPK_ID]


def test_target_ends_in_eos_and_is_truncated_from_the_right() -> None:
    enc = encode_example(_example(), VOCAB, SequenceLimits())
    assert enc.target_ids == VOCAB.encode(["sorry", "to", "hear", "that", "rex", "."]) + [EOS_ID]
    assert len(enc.target_emotion_mask) == len(enc.target_ids)
    enc = encode_example(_example(), VOCAB, SequenceLimits(max_target_len=3))
    assert enc.target_ids == VOCAB.encode(["sorry", "to"]) + [EOS_ID]
    assert len(enc.target_ext_ids) == 3 and enc.target_ext_ids[-1] == EOS_ID
    assert len(enc.target_emotion_mask) == 3


def test_emotion_sequence_starts_with_lab() -> None:
    enc = encode_example(_example(), VOCAB, SequenceLimits())
    assert enc.emotion_context_ids == [LAB_ID] + VOCAB.encode(["lost", "sad"])
    enc = encode_example(_example(emotion_words=[]), VOCAB, SequenceLimits())
    assert enc.emotion_context_ids == [LAB_ID]
    enc = encode_example(_example(emotion_words=["lost", "sad", "sad"]), VOCAB, SequenceLimits(max_emotion_words=2))
    assert enc.emotion_context_ids == [LAB_ID, VOCAB.token_to_id("sad")]  # the most recent one


def test_copy_ids_for_oov_context_words_and_copied_target_words() -> None:
    enc = encode_example(_example(), VOCAB, SequenceLimits())
    n = len(VOCAB)
    assert enc.oovs == ["miss", "rex"]
    assert VOCAB.token_to_id("rex") == UNK_ID
    # context: in-vocabulary ids unchanged, OOV words get len(vocab) + their index in oovs
    assert enc.context_ext_ids[:-2] == enc.context_ids[:-2]
    assert enc.context_ext_ids[-2:] == [n, n + 1]
    assert enc.context_ids[-2:] == [UNK_ID, UNK_ID]
    # target: "rex" is copied from the context, so it gets the same extended id
    assert enc.target_ids[4] == UNK_ID
    assert enc.target_ext_ids[4] == n + 1
    assert enc.target_ext_ids[:4] == enc.target_ids[:4]
    # an OOV target word absent from the context stays UNK
    enc = encode_example(_example(target=["sorry", "bob"]), VOCAB, SequenceLimits())
    assert enc.target_ext_ids == [VOCAB.token_to_id("sorry"), UNK_ID, EOS_ID]
    # a repeated OOV word maps to one slot
    enc = encode_example(_example(context=[["rex", "rex", "dog"]]), VOCAB, SequenceLimits())
    assert enc.oovs == ["rex"]
    assert enc.context_ext_ids == [CLS_ID, n, n, VOCAB.token_to_id("dog")]


def test_feedback_encoding() -> None:
    enc = encode_example(_example(feedback=["thanks", "."]), VOCAB, SequenceLimits())
    assert enc.has_feedback
    assert enc.feedback_ids == VOCAB.encode(["thanks", "."]) + [EOS_ID]
    enc = encode_example(_example(feedback=None), VOCAB, SequenceLimits())
    assert not enc.has_feedback
    assert enc.feedback_ids == []


def test_sequence_limits_reject_tiny_values() -> None:
    with pytest.raises(ValueError, match="max_context_len"):
        SequenceLimits(max_context_len=1)


def _batch():
    examples = [
        _example(feedback=["thanks"]),
        _example(context=[["dog"]], target=["so", "sad"], feedback=None, emotion_words=[]),
        _example(context=[["i", "lost", "my", "dog"], ["so", "sad"]], target=["sorry"], feedback=["thanks", "so"]),
    ]
    items = [encode_example(e, VOCAB, SequenceLimits()) for e in examples]
    return items, collate(items)


def test_collate_pads_and_masks_exactly_the_padding() -> None:
    items, batch = _batch()
    for name in ("context", "emotion_context", "target", "feedback"):
        ids = batch[f"{name}_ids"]
        mask = batch[f"{name}_pad_mask"]
        lengths = [len(getattr(it, f"{name}_ids")) for it in items]
        assert ids.shape == (3, max(max(lengths), 1))
        assert mask.dtype == torch.bool and mask.shape == ids.shape
        for row, length in enumerate(lengths):
            expected = torch.arange(ids.shape[1]) >= length
            assert torch.equal(mask[row], expected), name
            assert ids[row, length:].eq(PAD_ID).all()
            assert ids[row, :length].tolist() == getattr(items[row], f"{name}_ids")
    for name in ("context_state", "context_ext_ids", "target_ext_ids"):
        assert batch[name].shape == batch[name.split("_")[0] + "_ids"].shape
    assert batch["context_state"][1, 2:].eq(PAD_ID).all()
    assert batch["target_emotion_mask"].dtype == torch.float
    assert batch["target_emotion_mask"].shape == batch["target_ids"].shape


def test_collate_labels_feedback_and_oovs() -> None:
    items, batch = _batch()
    assert batch["emotion_label"].tolist() == [27, 27, 27]
    assert batch["has_feedback"].dtype == torch.bool
    assert batch["has_feedback"].tolist() == [True, False, True]
    assert batch["feedback_pad_mask"][1].all()  # no feedback: all padding
    assert batch["max_oov"] == 2
    assert batch["oovs"] == [["miss", "rex"], [], []]
    assert batch["example_ids"] == ["x#1"] * 3


def test_dataset_lengths() -> None:
    examples = [_example(), _example(context=[["dog"]], target=["so"])]
    dataset = EncodedDataset(examples, VOCAB, SequenceLimits())
    assert len(dataset) == 2
    assert dataset.lengths == [len(it.context_ids) + len(it.target_ids) for it in dataset.items]
    assert dataset.lengths[1] == 2 + 2


def test_dataset_lengths_by_the_longest_field() -> None:
    examples = [_example(), _example(context=[["dog"]], target=["so"], feedback=["thanks", "i", "lost", "my", "dog"])]
    dataset = EncodedDataset(examples, VOCAB, SequenceLimits(), bucket_by="longest")
    # first: context [CLS] + 4 + 2 + 3 = 10 ids, reply 6 + [EOS] = 7, no next utterance; second: 2, 2, 5 + [EOS]
    assert dataset.lengths == [10, 6]
    with pytest.raises(ValueError, match=r"data\.bucket_by='widest': choose one of"):
        EncodedDataset(examples, VOCAB, SequenceLimits(), bucket_by="widest")


# -- BucketBatchSampler -----------------------------------------------------------------------
LENGTHS = [(i * 7919) % 37 + 1 for i in range(103)]


def _epoch(sampler: BucketBatchSampler, epoch: int) -> list[list[int]]:
    sampler.set_epoch(epoch)
    return list(sampler)


@pytest.mark.parametrize("drop_last", [False, True])
def test_sampler_covers_every_index_once(drop_last: bool) -> None:
    sampler = BucketBatchSampler(LENGTHS, 8, bucket_size_multiplier=3, seed=5, drop_last=drop_last)
    batches = _epoch(sampler, 0)
    flat = [i for b in batches for i in b]
    assert len(batches) == len(sampler)
    if drop_last:
        assert len(flat) == len(set(flat)) == 96
        assert all(len(b) == 8 for b in batches)
    else:
        assert sorted(flat) == list(range(len(LENGTHS)))
        assert all(1 <= len(b) <= 8 for b in batches)


def test_sampler_deterministic_per_seed_and_epoch() -> None:
    a = BucketBatchSampler(LENGTHS, 8, bucket_size_multiplier=3, seed=5)
    b = BucketBatchSampler(LENGTHS, 8, bucket_size_multiplier=3, seed=5)
    assert _epoch(a, 0) == _epoch(b, 0)
    assert _epoch(a, 3) == _epoch(b, 3)
    assert _epoch(a, 0) != _epoch(a, 1)  # a new order each epoch
    assert _epoch(a, 0) == _epoch(a, 0)  # iterating twice is repeatable
    c = BucketBatchSampler(LENGTHS, 8, bucket_size_multiplier=3, seed=6)
    assert _epoch(a, 0) != _epoch(c, 0)


def test_sampler_sorts_by_length_within_buckets() -> None:
    bucket = 8 * 3
    sampler = BucketBatchSampler(LENGTHS, 8, bucket_size_multiplier=3, seed=1)
    batches = _epoch(sampler, 0)
    for batch in batches:
        lengths = [LENGTHS[i] for i in batch]
        assert lengths == sorted(lengths)
    # batches are consecutive slices of sorted buckets: within a bucket they do not interleave
    generator = torch.Generator().manual_seed(1 * 100_003 + 0)
    order = torch.randperm(len(LENGTHS), generator=generator).tolist()
    buckets = [set(order[i : i + bucket]) for i in range(0, len(order), bucket)]
    for batch in batches:
        assert any(set(batch) <= b for b in buckets)
    spread_bucketed = sum(max(LENGTHS[i] for i in b) - min(LENGTHS[i] for i in b) for b in batches)
    plain = BucketBatchSampler(LENGTHS, 8, bucketing=False, seed=1)
    spread_plain = sum(max(LENGTHS[i] for i in b) - min(LENGTHS[i] for i in b) for b in _epoch(plain, 0))
    assert spread_bucketed < spread_plain


def test_sampler_without_shuffle_is_in_order() -> None:
    sampler = BucketBatchSampler(LENGTHS, 10, shuffle=False, bucketing=False)
    assert _epoch(sampler, 0) == [list(range(i, min(i + 10, 103))) for i in range(0, 103, 10)]


@pytest.mark.parametrize("world", [2, 3])
def test_sampler_rank_shards_are_disjoint_and_equal(world: int) -> None:
    def sampler(**kwargs) -> BucketBatchSampler:
        return BucketBatchSampler(LENGTHS, 8, bucket_size_multiplier=3, seed=5, drop_last=True, **kwargs)

    shards = [_epoch(sampler(num_replicas=world, rank=r), 2) for r in range(world)]
    sizes = {len(s) for s in shards}
    assert len(sizes) == 1  # equal number of batches on every rank
    assert sizes.pop() == len(BucketBatchSampler(LENGTHS, 8, num_replicas=world, rank=0, drop_last=True))
    flat = [i for s in shards for b in s for i in b]
    assert len(flat) == len(set(flat))  # disjoint
    assert len(flat) >= len(LENGTHS) - 8 * world  # nearly everything is used
    single = {i for b in _epoch(sampler(), 2) for i in b}
    assert set(flat) <= single


def test_sampler_skip_next_resumes_after_consumed_batches() -> None:
    sampler = BucketBatchSampler(LENGTHS, 8, bucket_size_multiplier=3, seed=5)
    full = _epoch(sampler, 4)
    sampler.skip_next(5)
    assert list(sampler) == full[5:]
    assert list(sampler) == full  # the skip applies to one iteration only
    ranked = BucketBatchSampler(LENGTHS, 8, seed=5, num_replicas=2, rank=1, drop_last=True)
    ranked_full = _epoch(ranked, 1)
    ranked.skip_next(2)
    assert list(ranked) == ranked_full[2:]


def test_sampler_rejects_bad_batch_size() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        BucketBatchSampler(LENGTHS, 0)


def test_evaluation_shards_cover_every_example_once() -> None:
    """Evaluation must not drop the batches that do not divide evenly over the ranks."""
    lengths = list(range(23))
    seen = []
    for rank in range(3):
        sampler = BucketBatchSampler(
            lengths, 4, shuffle=False, bucketing=False, num_replicas=3, rank=rank, even_shards=False
        )
        batches = list(sampler)
        assert len(batches) == len(sampler)
        seen += [i for batch in batches for i in batch]
    assert sorted(seen) == lengths
