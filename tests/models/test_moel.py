"""MoEL: listener weights (top-k, oracle, scheduled oracle), the mixture, cached decoding, training."""

from __future__ import annotations

import math

import pytest
import torch
from tiny import random_context, tiny_generator
from torch import Tensor

from empdg.models.decoding import DecodingConfig, decode, greedy_decode
from empdg.models.moel import MoELGenerator, MoELSettings, MoELState, listener_weights, oracle_probability

VOCAB = 40
EMOTIONS = 32
TINY = dict(emb_dim=16, hidden_dim=16, attn_dim=16, num_heads=2, ff_dim=16, max_positions=64)


def tiny_model(seed: int = 0, **overrides) -> MoELGenerator:
    return tiny_generator(MoELGenerator, MoELSettings, TINY, VOCAB, seed=seed, sharpen=6.0, **overrides)


def tiny_batch(batch_size: int = 4, seed: int = 1) -> dict:
    context = random_context(VOCAB, batch_size, torch.Generator().manual_seed(seed))
    return {**context, "emotion_label": torch.arange(batch_size) * 3 % EMOTIONS, "max_oov": 0}


# -- the meta-listener's weights ---------------------------------------------------------------
def test_top_k_renormalises_the_k_largest_by_hand() -> None:
    logits = torch.log(torch.tensor([[1.0, 2.0, 3.0, 0.5, 0.1]]))
    assert torch.allclose(listener_weights(logits, top_k=2), torch.tensor([[0.0, 0.4, 0.6, 0.0, 0.0]]))
    full = torch.tensor([[1.0, 2.0, 3.0, 0.5, 0.1]]) / 6.6
    assert torch.allclose(listener_weights(logits, top_k=0), full)
    assert torch.allclose(listener_weights(logits, top_k=5), full)  # k = every emotion: plain softmax


def test_top_k_keeps_exactly_the_k_largest() -> None:
    logits = torch.randn(6, EMOTIONS, generator=torch.Generator().manual_seed(0))
    weights = listener_weights(logits, top_k=5)
    assert weights.ne(0).sum(dim=1).tolist() == [5] * 6
    assert torch.equal(
        weights.ne(0), torch.zeros_like(weights, dtype=torch.bool).scatter(1, logits.topk(5).indices, True)
    )
    assert torch.allclose(weights.sum(dim=1), torch.ones(6))


def test_encode_weighs_listeners_by_the_top_k_prediction() -> None:
    model, batch = tiny_model(top_k=3), tiny_batch()
    encoded = model.encode(batch)
    assert encoded.w0 is None and torch.equal(encoded.x0, encoded.state.memory[:, 0])
    assert torch.equal(encoded.state.weights, listener_weights(encoded.emotion_logits, 3))


def test_oracle_puts_all_weight_on_the_gold_emotion_in_inference_too() -> None:
    model, batch = tiny_model(oracle=True), tiny_batch()
    weights = model.encode(batch).state.weights  # eval mode
    assert torch.equal(weights, torch.nn.functional.one_hot(batch["emotion_label"], EMOTIONS).float())
    del batch["emotion_label"]
    with pytest.raises(ValueError, match="model.oracle=true"):
        model.encode(batch)


def test_scheduled_oracle_decays_and_only_trains() -> None:
    assert oracle_probability(0, 10) == 1.0
    assert oracle_probability(10, 10) == pytest.approx(1e-4 + (1 - 1e-4) / math.e)
    model, batch = tiny_model(oracle_schedule=10), tiny_batch()
    gold = torch.nn.functional.one_hot(batch["emotion_label"], EMOTIONS).float()
    model.train()
    assert torch.equal(model.encode(batch).state.weights, gold)  # p = 1 at the start
    assert int(model.oracle_clock) == 1
    model.oracle_clock.fill_(10**9)  # p = 1e-4: the prediction (with this seed)
    torch.manual_seed(0)
    encoded = model.encode(batch)
    assert torch.equal(encoded.state.weights, listener_weights(encoded.emotion_logits, 5))
    model.eval()
    model.oracle_clock.zero_()
    assert not torch.equal(model.encode(batch).state.weights, gold)  # never in inference
    assert int(model.oracle_clock) == 0
    assert "oracle_clock" in model.state_dict()  # the schedule resumes from a checkpoint


# -- the mixture ------------------------------------------------------------------------------
def _state(weights: Tensor) -> MoELState:
    memory = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(3))
    return MoELState(memory=memory, memory_pad_mask=torch.zeros(2, 5, dtype=torch.bool), weights=weights)


@pytest.mark.parametrize("shared", [True, False])
def test_meta_listener_input_is_the_weighted_sum_plus_the_shared_listener(shared: bool) -> None:
    model = tiny_model(shared_listener=shared)
    weights = torch.zeros(2, EMOTIONS)
    weights[0, 1], weights[0, 4] = 0.25, 0.75
    weights[1, 4] = 1.0
    state = _state(weights)
    x = torch.randn(2, 3, 16, generator=torch.Generator().manual_seed(4))

    def out(layer):
        return layer(x, state.memory, state.memory_pad_mask)[0]

    expected = torch.stack(
        [0.25 * out(model.listeners[1])[0] + 0.75 * out(model.listeners[4])[0], out(model.listeners[4])[1]]
    )
    if shared:
        expected = expected + out(model.shared_listener)  # weight 1, always
    else:
        assert model.shared_listener is None
    assert torch.allclose(model.listen(x, state), expected, atol=1e-6)


def test_unweighted_listeners_do_not_matter_and_weighted_ones_do() -> None:
    model, batch = tiny_model(top_k=2), tiny_batch()
    encoded = model.encode(batch)
    targets = model.embed_tokens(torch.randint(8, VOCAB, (4, 5), generator=torch.Generator().manual_seed(5)))
    before = model.decode_sequence(encoded, targets)
    weighted = encoded.state.weights.ne(0).any(dim=0)
    unused, used = int((~weighted).nonzero()[0]), int(weighted.nonzero()[0])
    with torch.no_grad():
        for p in model.listeners[unused].parameters():
            p.add_(1.0)
    assert torch.equal(model.decode_sequence(encoded, targets), before)
    with torch.no_grad():
        for p in model.listeners[used].parameters():
            p.add_(1.0)
    assert not torch.allclose(model.decode_sequence(encoded, targets), before)


# -- decoding ---------------------------------------------------------------------------------
@pytest.mark.parametrize("top_k", [3, 0])
@pytest.mark.parametrize("strategy", ["greedy", "beam", "sample"])
def test_cached_equals_uncached(strategy: str, top_k: int) -> None:
    model, batch = tiny_model(top_k=top_k), tiny_batch()
    cfg = dict(strategy=strategy, max_len=10, beam_size=3, top_k=5, seed=7)
    cached = decode(model, batch, DecodingConfig(**cfg, use_cache=True))
    uncached = decode(model, batch, DecodingConfig(**cfg, use_cache=False))
    assert torch.equal(cached, uncached)
    if strategy == "beam":  # beams were re-ranked, so reorder_cache was exercised
        assert not torch.equal(cached, greedy_decode(model, batch, max_len=10))


def test_log_probs_are_distributions_and_decoding_is_causal() -> None:
    model, batch = tiny_model(), tiny_batch()
    encoded = model.encode(batch)
    targets = model.embed_tokens(torch.randint(8, VOCAB, (4, 6), generator=torch.Generator().manual_seed(6)))
    log_probs = model.decode_sequence(encoded, targets)
    assert log_probs.shape == (4, 7, VOCAB)
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(4, 7), atol=1e-5)
    changed = targets.clone()
    changed[:, 3] += 1.0
    assert torch.allclose(model.decode_sequence(encoded, changed)[:, :4], log_probs[:, :4], atol=1e-6)


def test_gradient_reaches_the_decoder_through_soft_token_vectors() -> None:
    model, batch = tiny_model(), tiny_batch()
    model.train()
    encoded = model.encode(batch)
    soft_logits = torch.randn(4, 5, VOCAB, requires_grad=True)
    soft = torch.softmax(soft_logits, dim=-1) @ model.word_embedding.weight
    model.decode_sequence(encoded, soft)[:, :, 9].sum().backward()
    assert soft_logits.grad is not None and soft_logits.grad.abs().sum() > 0
    weighted = int(encoded.state.weights.ne(0).any(dim=0).nonzero()[0])
    for module in (model.listeners[weighted], model.shared_listener, model.meta_listener, model.output):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
    ids = {id(p) for p in model.decoder_parameters()}
    assert all(id(p) in ids for p in model.listeners.parameters())
    assert not any(id(p) in ids for p in model.encoder.parameters())


# -- settings and size ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"copy": True}, "model.copy"),
        ({"top_k": 33}, "model.top_k"),
        ({"top_k": -1}, "model.top_k"),
        ({"oracle_schedule": -1}, "model.oracle_schedule"),
    ],
)
def test_impossible_settings_name_their_key(overrides: dict, key: str) -> None:
    with pytest.raises(ValueError, match=key):
        MoELSettings(**overrides)


def test_paper_size_parameter_count() -> None:
    vocab, h = 1000, 300
    model = MoELGenerator(MoELSettings(), vocab_size=vocab)
    mha, ff, norm = 4 * h * 40, 2 * h * 50 + 50 + h, 2 * h
    decoder_layer = 2 * mha + ff + 3 * norm
    expected = (
        vocab * h  # word embedding (emb_dim == hidden_dim: no projection)
        + mha
        + ff
        + 2 * norm
        + norm  # encoder: one layer and its final norm
        + h * EMOTIONS  # emotion classifier
        + 33 * decoder_layer  # 32 emotion listeners + the shared one
        + decoder_layer
        + norm  # meta-listener
        + h * vocab
        + vocab  # output layer
    )
    assert sum(p.numel() for p in model.parameters()) == expected
    # at a ~23.7k-word vocabulary (about EmpatheticDialogues'): 18.70M; the original MoEL code has 0.2M more
    # (a word projection per side, an unused 64x300 emoji projection, the pointer gate)
    at_ed_vocab = expected + (23714 - vocab) * (2 * h + 1)
    print(f"MoEL parameters at vocab 23714: {at_ed_vocab:,}")
    assert at_ed_vocab == pytest.approx(18.70e6, rel=1e-3)
