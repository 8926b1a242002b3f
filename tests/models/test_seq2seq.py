"""The Seq2Seq-with-attention baseline: its attention, packing, cache and a tiny run through every phase."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf
from tiny import random_context, tiny_generator

from empdg.config import compose
from empdg.models.decoding import DecodingConfig, decode
from empdg.models.registry import build_generator
from empdg.models.seq2seq import (
    AdditiveAttention,
    MultiplicativeAttention,
    Seq2SeqGenerator,
    Seq2SeqSettings,
    attend,
)

VOCAB = 40
TINY = dict(emb_dim=16, hidden_dim=16, attn_dim=16, ff_dim=16)


def random_model(seed: int = 0, **overrides) -> Seq2SeqGenerator:
    return tiny_generator(Seq2SeqGenerator, Seq2SeqSettings, TINY, VOCAB, seed=seed, **overrides)


def random_batch(batch_size: int = 4, seed: int = 1) -> dict:
    gen = torch.Generator().manual_seed(seed)
    context = random_context(VOCAB, batch_size, gen)
    return {**context, "target_ids": torch.randint(8, VOCAB, (batch_size, 5), generator=gen)}


def row(batch: dict, index: int, length: int) -> dict:
    """Example ``index`` alone, trimmed to its first ``length`` positions (no padding at all)."""
    return {key: value[index : index + 1, :length] for key, value in batch.items()}


# -- settings ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(rnn_type="rnn"), "model.rnn_type='rnn' must be one of"),
        (dict(attention="dot"), "model.attention='dot' must be one of"),
        (dict(copy=True), "model.copy=true: seq2seq has no copy mechanism"),
    ],
)
def test_impossible_settings_name_their_key(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Seq2SeqSettings(**TINY, **change)


def test_settings_types_are_checked() -> None:
    with pytest.raises(ValueError, match="model.bidirectional_encoder='yes' must be true or false"):
        Seq2SeqSettings.from_mapping({"bidirectional_encoder": "yes"})
    assert Seq2SeqSettings.from_mapping({"rnn_type": "lstm"}).rnn_type == "lstm"


def test_yaml_composes_to_the_defaults() -> None:
    cfg = compose("train", ["model=seq2seq"])
    assert list(cfg.adversarial.critics) == ["semantic", "emotion"]  # trains against both critics
    model = OmegaConf.to_container(cfg.model, resolve=True)
    assert model["name"] == "seq2seq"
    assert (model["rnn_type"], model["attention"], model["bidirectional_encoder"]) == ("gru", "additive", True)
    assert (model["emb_dim"], model["hidden_dim"], model["num_layers"], model["copy"]) == (300, 300, 1, False)
    assert isinstance(build_generator(model, vocab_size=100), Seq2SeqGenerator)


# -- attention against hand-computed 2x3 cases ---------------------------------------------------
QUERIES = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # [1, 2 queries, 2]
MEMORY = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])  # [1, 3 positions, 2]


def hand_attention(scores: list[list[float]], pad_last: bool) -> torch.Tensor:
    """Softmax of hand-computed scores (the last position dropped when padded), as [1, 2, 3]."""
    rows = []
    for row_scores in scores:
        kept = row_scores[:2] if pad_last else row_scores
        total = sum(math.exp(s) for s in kept)
        rows.append([math.exp(s) / total for s in kept] + ([0.0] if pad_last else []))
    return torch.tensor([rows])


@pytest.mark.parametrize("pad_last", [False, True])
def test_multiplicative_attention_hand_computed(pad_last: bool) -> None:
    scorer = MultiplicativeAttention(2, 2)
    with torch.no_grad():
        scorer.key.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))  # W: score = q · (m1, 2 m2)
    # q1=(1,0): (1, 0, 1); q2=(0,1): (0, 2, 2)
    expected = hand_attention([[1.0, 0.0, 1.0], [0.0, 2.0, 2.0]], pad_last)
    context, weights = attend(scorer, QUERIES, MEMORY, torch.tensor([[False, False, pad_last]]))
    assert torch.allclose(weights, expected, atol=1e-6)
    assert torch.allclose(context, expected @ MEMORY, atol=1e-6)


@pytest.mark.parametrize("pad_last", [False, True])
def test_additive_attention_hand_computed(pad_last: bool) -> None:
    scorer = AdditiveAttention(2, 2, 2)
    with torch.no_grad():
        scorer.query.weight.copy_(torch.eye(2))
        scorer.key.weight.copy_(torch.eye(2))
        scorer.key.bias.copy_(torch.tensor([0.0, -1.0]))
        scorer.score.weight.copy_(torch.tensor([[1.0, 2.0]]))  # score = tanh(q1+m1) + 2 tanh(q2+m2-1)
    t = math.tanh
    scores = [
        [t(2) + 2 * t(-1), t(1) + 2 * t(0), t(2) + 2 * t(0)],  # q1 = (1, 0)
        [t(1) + 2 * t(0), t(0) + 2 * t(1), t(1) + 2 * t(1)],  # q2 = (0, 1)
    ]
    expected = hand_attention(scores, pad_last)
    context, weights = attend(scorer, QUERIES, MEMORY, torch.tensor([[False, False, pad_last]]))
    assert torch.allclose(weights, expected, atol=1e-6)
    assert torch.allclose(context, expected @ MEMORY, atol=1e-6)


@pytest.mark.parametrize("attention", ["additive", "multiplicative"])
def test_model_attention_ignores_padding_and_sums_to_one(attention: str) -> None:
    model, batch = random_model(attention=attention), random_batch()
    state = model.encode(batch).state
    queries = torch.randn(4, 3, 16)
    _, weights = attend(model.attention, queries, state.memory, state.memory_pad_mask)
    assert torch.all(weights[0, :, -3:] == 0)  # exactly zero on the padded row's padding
    assert torch.all(weights[:, :, :-3] > 0)
    assert torch.allclose(weights.sum(dim=-1), torch.ones(4, 3))


# -- encoder and decoder ---------------------------------------------------------------------------
@pytest.mark.parametrize("rnn_type", ["gru", "lstm"])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_padding_never_changes_the_encoding(rnn_type: str, bidirectional: bool) -> None:
    model = random_model(rnn_type=rnn_type, bidirectional_encoder=bidirectional, num_layers=2)
    batch = random_batch()
    together = model.encode(batch)
    alone = model.encode(row(batch, 0, 6))  # row 0 has 6 real positions, 3 pads in the batch
    assert torch.allclose(together.x0[:1], alone.x0, atol=1e-6)
    assert torch.allclose(together.state.memory[:1, :6], alone.state.memory, atol=1e-6)
    assert torch.all(together.state.memory[0, 6:] == 0)
    assert torch.allclose(together.state.hidden[:1], alone.state.hidden, atol=1e-6)
    if rnn_type == "lstm":
        assert torch.allclose(together.state.cell[:1], alone.state.cell, atol=1e-6)
    targets = model.embed_tokens(batch["target_ids"])
    together_lp = model.decode_sequence(together, targets)
    alone_lp = model.decode_sequence(alone, targets[:1])
    assert torch.allclose(together_lp[:1], alone_lp, atol=1e-5)


def test_x0_is_the_final_states_of_both_directions_projected() -> None:
    model, batch = random_model(), random_batch()
    encoded = model.encode(batch)
    memory = encoded.state.memory  # [B, S, 2H]: forward half ends at the last real position, backward at 0
    forward_last = torch.stack([memory[0, 5, :16], *memory[1:, -1, :16]])
    backward_first = memory[:, 0, 16:]
    expected = torch.tanh(model.bridge(torch.cat([forward_last, backward_first], dim=-1)))
    assert torch.allclose(encoded.x0, expected, atol=1e-6)
    assert encoded.x0.shape == (4, 16) and encoded.w0 is None and encoded.emotion_logits is None


def test_emotion_classifier_reads_x0() -> None:
    model = random_model(emotion_classifier=True)
    encoded = model.encode(random_batch())
    assert model.sizes.has_emotion_classifier
    assert torch.allclose(encoded.emotion_logits, model.emotion_classifier(encoded.x0))


@pytest.mark.parametrize("rnn_type", ["gru", "lstm"])
def test_log_probs_shape_and_normalised(rnn_type: str) -> None:
    model, batch = random_model(rnn_type=rnn_type), random_batch()
    out = model(batch)
    assert out.log_probs.shape == (4, 5, VOCAB)
    assert torch.allclose(out.log_probs.exp().sum(dim=-1), torch.ones(4, 5), atol=1e-5)


@pytest.mark.parametrize("rnn_type", ["gru", "lstm"])
def test_decode_step_matches_decode_sequence(rnn_type: str) -> None:
    model, batch = random_model(rnn_type=rnn_type, num_layers=2), random_batch()
    encoded = model.encode(batch)
    vectors = model.embed_tokens(batch["target_ids"])
    full = model.decode_sequence(encoded, vectors)
    cache = model.new_cache(encoded)
    steps = [model.decode_step(encoded, cache, None)]
    steps += [model.decode_step(encoded, cache, vectors[:, t]) for t in range(vectors.shape[1])]
    assert torch.allclose(torch.stack(steps, dim=1), full, atol=1e-5)
    assert cache["hidden"].shape == (4, 2, 16)  # the batch on dim 0, for the default reorder/repeat


@pytest.mark.parametrize("rnn_type", ["gru", "lstm"])
@pytest.mark.parametrize("strategy", ["greedy", "beam", "sample"])
def test_cached_equals_uncached(rnn_type: str, strategy: str) -> None:
    model, batch = random_model(rnn_type=rnn_type), random_batch()
    cfg = dict(strategy=strategy, max_len=12, beam_size=3, top_k=5, seed=7)
    cached = decode(model, batch, DecodingConfig(**cfg, use_cache=True))
    uncached = decode(model, batch, DecodingConfig(**cfg, use_cache=False))
    assert torch.equal(cached, uncached)
    if strategy == "beam":  # the beams must have mattered: beam search differs from greedy somewhere
        greedy = decode(model, batch, DecodingConfig(strategy="greedy", max_len=12))
        assert not torch.equal(cached, greedy)


def test_gradient_reaches_the_decoder_through_soft_tokens() -> None:
    model, batch = random_model(), random_batch()
    model.train()
    encoded = model.encode(batch)
    soft_logits = torch.randn(4, 5, VOCAB, requires_grad=True)
    vectors = torch.softmax(soft_logits, dim=-1) @ model.word_embedding.weight
    model.decode_sequence(encoded, vectors)[:, -1].max(dim=-1).values.sum().backward()
    assert soft_logits.grad is not None and soft_logits.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.decoder.parameters())


def test_decoder_parameters_are_the_decoder_side() -> None:
    model = random_model(attention="multiplicative")
    decoder = {id(p) for p in model.decoder_parameters()}
    expected = [model.decoder, model.attention, model.combine, model.output]
    assert decoder == {id(p) for m in expected for p in m.parameters()}
    assert not decoder & {id(p) for m in (model.encoder, model.bridge, model.embedding) for p in m.parameters()}


@pytest.mark.parametrize("rnn_type", ["gru", "lstm"])
def test_both_rnn_types_learn_and_decode(rnn_type: str) -> None:
    model, batch = random_model(rnn_type=rnn_type), random_batch()
    model.train()
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-2)
    losses = []
    for _ in range(40):
        log_probs = model(batch).log_probs
        loss = torch.nn.functional.nll_loss(log_probs.flatten(0, 1), batch["target_ids"].flatten())
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    model.eval()
    ids = decode(model, batch, DecodingConfig(strategy="greedy", max_len=4, min_len=4))
    assert torch.equal(ids, batch["target_ids"][:, :4])  # it memorised the targets it trained on


def test_paper_size_parameter_count() -> None:
    vocab, e, h = 20000, 300, 300
    model = Seq2SeqGenerator(Seq2SeqSettings(), vocab_size=vocab)
    gru = 3 * (h * e + h * h + 2 * h)  # one direction of one layer: W_ih, W_hh and their biases
    expected = (
        vocab * e  # word embedding
        + 2 * gru  # bidirectional encoder
        + (2 * h * h + h)  # bridge to x̃0
        + gru  # decoder
        + (h * h + 2 * h * h + h + h)  # additive attention: W_q, W_m + b, v
        + 3 * h * h  # W_c
        + h * vocab  # output layer
    )
    total = sum(p.numel() for p in model.parameters())
    print(f"seq2seq paper size, vocab {vocab}: {total:,} parameters")
    assert total == expected
    assert 14e6 < total < 15e6  # about 12M in the embedding and output layers, about 2.4M recurrent
