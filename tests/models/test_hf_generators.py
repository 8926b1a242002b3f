"""Pretrained generators (``hf_seq2seq``, ``hf_causal``) behind the seam, on tiny random HF folders.

The folders come from ``make_tiny_pretrained`` (session fixture ``tiny_pretrained``) and load through
the same ``from_pretrained`` path as a real checkpoint. Training against the critics, reload and
decoding for every model: tests/models/test_every_model.py.
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

from empdg.data.builtin import generate_builtin_corpus
from empdg.data.dataset import SequenceLimits, collate, encode_example
from empdg.data.emotion_words import get_lexicon
from empdg.data.examples import build_examples
from empdg.data.text import normalize
from empdg.data.vocab import (
    EOS_ID,
    LAB_ID,
    LST_ID,
    OFFSET,
    PAD_ID,
    SOS_ID,
    SPK_ID,
    SubwordVocab,
    Vocab,
    vocab_from_spec,
)
from empdg.models.base import IMPOSSIBLE_LOG_PROB
from empdg.models.decoding import DecodingConfig, decode, ids_to_text
from empdg.models.registry import build_generator
from empdg.training.losses import sequence_nll

FAMILIES = ("seq2seq", "causal")
AUTO = {"seq2seq": AutoModelForSeq2SeqLM, "causal": AutoModelForCausalLM}


@pytest.fixture(scope="module")
def examples():
    lexicon = get_lexicon()
    corpus = generate_builtin_corpus(train_per_emotion=1, valid_per_emotion=1, test_per_emotion=1)
    return build_examples(corpus["train"][:3], normalize, lexicon.emotion_words, lexicon.emotion_mask)


@pytest.fixture(scope="module")
def vocabs(tiny_pretrained) -> dict[str, SubwordVocab]:
    return {family: SubwordVocab.from_pretrained(folder, "moel") for family, folder in tiny_pretrained.items()}


def make(tiny_pretrained, vocabs, family: str, seed: int = 0, **settings):
    torch.manual_seed(seed)
    model = {"name": f"hf_{family}", "pretrained": str(tiny_pretrained[family]), **settings}
    return build_generator(model, len(vocabs[family]))


def batch_for(vocab, examples):
    return collate([encode_example(e, vocab, SequenceLimits()) for e in examples])


# -- the vocabulary ------------------------------------------------------------------------------
def test_subword_vocab_keeps_the_specials_and_shifts_the_tokenizer_ids(vocabs) -> None:
    vocab = vocabs["causal"]
    assert vocab.tokens[:OFFSET] == Vocab.build([["x"]]).tokens[:OFFSET]
    assert vocab.tokens[OFFSET] == "<|endoftext|>" and vocab.unit == "subword" and vocab.turn_markers
    pieces = vocab.pieces("unbelievably")
    assert len(pieces) > 1 and all(index >= OFFSET for index in pieces)  # a rare word splits into pieces
    words = ["i", "could", "not", "believe", "it", ",", "my", "neighbor", "'s", "dog", "ate", "the", "cake", "!"]
    assert vocab.decode(vocab.encode(words) + [EOS_ID, 40]) == words  # detokenised, re-tokenised, stops at EOS


def test_subword_vocab_survives_a_file_and_a_checkpoint_spec(vocabs, tmp_path) -> None:
    vocab = vocabs["seq2seq"]
    vocab.save(tmp_path / "vocab.json")
    again = Vocab.load(tmp_path / "vocab.json")
    assert isinstance(again, SubwordVocab) and again.fingerprint() == vocab.fingerprint()
    assert vocab_from_spec(vocab.spec(), vocab.tokens).tokens == vocab.tokens
    with pytest.raises(ValueError, match="does not match"):
        vocab_from_spec(vocab.spec(), vocab.tokens[:-1])
    assert Vocab.build([["a", "b"]]).spec() is None


def test_encoding_marks_turns_and_gives_every_piece_its_word_flags(vocabs, examples) -> None:
    vocab, example = vocabs["causal"], examples[1]
    encoded = encode_example(example, vocab, SequenceLimits())
    markers = [i for i, index in enumerate(encoded.context_ids) if index in (SPK_ID, LST_ID)]
    assert len(markers) == len(example.context)  # one marker before every utterance
    assert [encoded.context_ids[i] for i in markers] == [SPK_ID if r == 0 else LST_ID for r in example.context_roles]
    assert encoded.context_state[1:] == [  # the marker and the pieces carry their utterance's state
        SPK_ID if role == 0 else LST_ID
        for role, utterance in zip(example.context_roles, example.context)
        for _ in range(1 + len(vocab.encode(utterance)))
    ]
    expected_mask = [float(flag) for word, flag in zip(example.target, example.target_emotion_mask)
                     for _ in vocab.pieces(word)]  # fmt: skip
    assert encoded.target_emotion_mask[:-1] == expected_mask[: len(encoded.target_ids) - 1]
    assert encoded.emotion_context_ids == [LAB_ID] + vocab.encode(example.context_emotion_words)
    assert encoded.target_ids == vocab.encode(example.target) + [EOS_ID]


def test_word_vocab_encoding_is_unchanged(examples) -> None:
    vocab = Vocab.build([w for e in examples for w in [*e.context, e.target]])
    encoded = encode_example(examples[1], vocab, SequenceLimits())
    assert SPK_ID not in encoded.context_ids[1:] and LST_ID not in encoded.context_ids[1:]
    assert len(encoded.context_ids) == 1 + sum(len(u) for u in examples[1].context)


# -- the id map ----------------------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_every_model_token_is_reachable_once_and_structural_ids_never(tiny_pretrained, vocabs, examples, family):
    generator = make(tiny_pretrained, vocabs, family).eval()
    out = generator(batch_for(vocabs[family], examples))
    log_probs = out.log_probs
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(log_probs.shape[:-1]), atol=1e-5)
    for structural in (PAD_ID, SOS_ID, LAB_ID, SPK_ID, LST_ID):
        assert (log_probs[..., structural] <= IMPOSSIBLE_LOG_PROB / 2).all()
    eos = generator.special_ids["eos"]
    assert (log_probs[..., eos + OFFSET] <= IMPOSSIBLE_LOG_PROB / 2).all()  # eos only as EOS_ID
    assert (log_probs[..., EOS_ID] > IMPOSSIBLE_LOG_PROB / 2).all()
    # against the model's own softmax: project log-probs are the model's, renormalised over the allowed ids
    assert generator.project_to_model[EOS_ID] == eos and generator.project_to_model[OFFSET + 20] == 20


def test_label_smoothing_ignores_impossible_ids() -> None:
    log_probs = torch.log_softmax(torch.tensor([[[0.0, 1.0, 2.0, 3.0]]]), -1)
    masked = torch.cat([log_probs, torch.full((1, 1, 2), IMPOSSIBLE_LOG_PROB)], dim=-1)
    target = torch.tensor([[2]])
    plain = sequence_nll(log_probs, target, 0.1, 4).loss
    assert torch.allclose(sequence_nll(masked, target, 0.1, 6).loss, plain)
    assert torch.isfinite(sequence_nll(masked, target, 0.1, 6).loss)


# -- decoding and the critics' inputs ------------------------------------------------------------
@pytest.mark.parametrize("emotion_encoder", [False, True])
@pytest.mark.parametrize("family", FAMILIES)
def test_cached_decoding_equals_uncached(tiny_pretrained, vocabs, examples, family, emotion_encoder) -> None:
    generator = make(tiny_pretrained, vocabs, family, seed=3, emotion_encoder=emotion_encoder).eval()
    batch = batch_for(vocabs[family], examples)
    for strategy, extra in (("greedy", {}), ("beam", {"beam_size": 3}), ("sample", {"top_k": 8, "seed": 5})):
        config = dict(strategy=strategy, max_len=8, min_len=4, **extra)
        with torch.no_grad():
            sampler = torch.Generator().manual_seed(5)
            cached = decode(generator, batch, DecodingConfig(**config, use_cache=True), generator=sampler)
            sampler = torch.Generator().manual_seed(5)
            uncached = decode(generator, batch, DecodingConfig(**config, use_cache=False), generator=sampler)
        assert cached.shape[1] >= 4 and torch.equal(cached, uncached), strategy


def test_causal_rows_do_not_depend_on_their_batch(tiny_pretrained, vocabs, examples) -> None:
    """Padding sits between context and reply for short rows: masked, and skipped by the position ids."""
    generator = make(tiny_pretrained, vocabs, "causal", emotion_encoder=True).eval()
    together = generator(batch_for(vocabs["causal"], examples)).log_probs
    for row, example in enumerate(examples):
        alone = generator(batch_for(vocabs["causal"], [example])).log_probs[0]
        assert torch.allclose(together[row, : alone.shape[0]], alone, atol=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
def test_gradient_reaches_the_pretrained_weights_and_the_emotion_parts(tiny_pretrained, vocabs, examples, family):
    generator = make(tiny_pretrained, vocabs, family, emotion_encoder=True)
    out = generator(batch_for(vocabs[family], examples))
    (out.log_probs[..., OFFSET:].logsumexp(-1).sum() + out.encoded.emotion_logits.sum()).backward()
    for part in (generator.hf.get_input_embeddings(), generator.emotion_encoder, generator.emotion_head):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())
    assert out.encoded.x0.shape == out.encoded.w0.shape == (len(examples), generator.sizes.hidden_dim)
    # what the critics read: the model's own word vectors, rows of word_embedding
    ids = torch.tensor([[OFFSET + 5, EOS_ID]])
    assert torch.equal(generator.embed_tokens(ids)[0], generator.word_embedding.weight[ids[0]])


def test_a_frozen_encoder_gets_no_gradient_but_the_embedding_it_shares_with_the_decoder_trains(
    tiny_pretrained, vocabs, examples
) -> None:
    generator = make(tiny_pretrained, vocabs, "seq2seq", freeze_encoder=True)
    encoder, shared = generator.encoder_module(), generator.token_embedding().weight
    assert encoder.get_input_embeddings().weight is shared  # BART: one word embedding for both
    out = generator(batch_for(vocabs["seq2seq"], examples))
    (out.log_probs[..., OFFSET:].logsumexp(-1).sum() + out.encoded.emotion_logits.sum()).backward()
    frozen = [p for p in encoder.parameters() if p is not shared]
    assert frozen and not any(p.requires_grad or p.grad is not None for p in frozen)
    assert shared.requires_grad and shared.grad.abs().sum() > 0  # through the decoder alone
    decoder_layers = [p for n, p in generator.decoder_module().named_parameters() if ".layers." in n]
    assert all(p.grad is not None for p in decoder_layers)
    assert generator.emotion_head.weight.grad.abs().sum() > 0  # the summary of frozen states still classifies


def test_freeze_encoder_is_refused_for_a_decoder_only_model(tiny_pretrained, vocabs) -> None:
    with pytest.raises(ValueError, match="model.freeze_encoder=true: a decoder-only model has no encoder"):
        make(tiny_pretrained, vocabs, "causal", freeze_encoder=True)


# -- LoRA and the Hugging Face format ------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_lora_trains_adapters_only_and_saves_a_merged_model_transformers_loads(
    tiny_pretrained, vocabs, examples, family, tmp_path
) -> None:
    generator = make(tiny_pretrained, vocabs, family, lora_rank=2)
    trainable = {name for name, p in generator.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name or name.startswith("emotion_head") for name in trainable)
    with torch.no_grad():  # move the adapters away from zero so the merge matters
        for name, p in generator.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    batch = batch_for(vocabs[family], examples)
    generator.eval()
    mine = generator(batch).log_probs
    folder = generator.save_hf(tmp_path / "hf", vocabs[family].tokenizer_json)
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    plain = AUTO[family].from_pretrained(folder).eval()  # transformers alone, no peft
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.eos_token_id == generator.special_ids["eos"] == plain.config.eos_token_id  # GPT-2: eos = bos
    assert not any("lora" in name for name, _ in plain.named_parameters())
    rebuilt = build_generator({"name": f"hf_{family}", "pretrained": str(folder)}, len(vocabs[family])).eval()
    rebuilt.emotion_head.load_state_dict(generator.emotion_head.state_dict())
    assert torch.allclose(rebuilt(batch).log_probs, mine, atol=1e-4)


# -- clear errors --------------------------------------------------------------------------------
def test_settings_refuse_word_level_sizes_and_copy(tiny_pretrained, vocabs) -> None:
    with pytest.raises(ValueError, match="model.emb_dim has no effect"):
        make(tiny_pretrained, vocabs, "causal", emb_dim=64)
    with pytest.raises(ValueError, match="no copy mechanism"):
        make(tiny_pretrained, vocabs, "causal", copy=True)
    with pytest.raises(ValueError, match="speaker_token='<nope>' is not a token"):
        make(tiny_pretrained, vocabs, "causal", speaker_token="<nope>")


def test_a_missing_folder_says_how_to_work_offline(vocabs, tmp_path) -> None:
    with pytest.raises(OSError, match="make_tiny_pretrained") as error:
        build_generator({"name": "hf_causal", "pretrained": str(tmp_path / "nowhere")}, 100)
    assert "--local-dir" in str(error.value)


def test_ids_to_text_detokenises_subwords(vocabs) -> None:
    vocab = vocabs["seq2seq"]
    ids = vocab.encode(["that", "is", "so", "wonderful", "!"]) + [EOS_ID, OFFSET + 9]
    assert ids_to_text(ids, vocab, []) == "that is so wonderful !"


@pytest.mark.parametrize("family", FAMILIES)
def test_gradient_checkpointing_changes_memory_not_results(tiny_pretrained, vocabs, examples, family) -> None:
    """In training mode with checkpointing Hugging Face keeps no key/value cache: passes re-read the prefix."""
    batch = batch_for(vocabs[family], examples)
    plain = make(tiny_pretrained, vocabs, family, emotion_encoder=True)
    checkpointed = make(tiny_pretrained, vocabs, family, emotion_encoder=True, gradient_checkpointing=True)
    expected, got = plain(batch).log_probs, checkpointed(batch).log_probs
    assert torch.allclose(expected, got, atol=1e-5)
    got.sum().backward()
    expected.sum().backward()
    grads = [(p.grad, q.grad) for p, q in zip(plain.parameters(), checkpointed.parameters()) if p.grad is not None]
    assert grads and all(torch.allclose(a, b, atol=1e-4) for a, b in grads)
    config = DecodingConfig(strategy="greedy", max_len=6, min_len=3)
    assert torch.equal(decode(checkpointed, batch, config), decode(plain.eval(), batch, config))


def test_the_word_vectors_follow_the_generator_to_a_new_device(tiny_pretrained, vocabs) -> None:
    """``.to(device)`` replaces buffers: the critics' view of the word vectors must read the new ones."""
    generator = make(tiny_pretrained, vocabs, "causal")
    generator._apply(lambda t: t.clone())  # what .to(other device) does to every parameter and buffer
    ids = torch.tensor([[OFFSET + 5]])
    generator.project_to_model[OFFSET + 5] = 7  # the generator's buffer after the move
    expected = generator.hf.get_input_embeddings().weight[7]
    assert torch.equal(generator.embed_tokens(ids)[0, 0], expected)
    assert torch.equal(generator.word_embedding.weight[OFFSET + 5], expected)
    assert "_mapped_embedding" not in dict(generator.named_modules())
