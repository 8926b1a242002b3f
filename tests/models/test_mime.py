"""MIME: polarity groups, group-wise emotion mixtures, mimicry, determinism, cached decoding, training."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from tiny import random_context, random_emotion_words, tiny_generator

from empdg.config import compose
from empdg.data.conversation import EMOTION_TO_ID, EMOTIONS
from empdg.data.emotion_polarity import positive_emotion_ids
from empdg.data.vocab import EOS_ID, SOS_ID
from empdg.models.decoding import DecodingConfig, decode
from empdg.models.mime import MIMEGenerator, MIMESettings
from empdg.models.registry import build_generator

VOCAB = 40
TINY = dict(emb_dim=16, hidden_dim=16, attn_dim=16, num_heads=2, ff_dim=32, latent_dim=8, max_positions=64)
# MIME's own label order (its emo_map) and the indices its code marks positive
MIME_ORDER = (
    "surprised", "excited", "annoyed", "proud", "angry", "sad", "grateful", "lonely", "impressed", "afraid",
    "disgusted", "confident", "terrified", "hopeful", "anxious", "disappointed", "joyful", "prepared", "guilty",
    "furious", "nostalgic", "jealous", "anticipating", "embarrassed", "content", "devastated", "sentimental",
    "caring", "trusting", "ashamed", "apprehensive", "faithful",
)  # fmt: skip
MIME_POSITIVE = (11, 16, 6, 8, 3, 1, 28, 13, 31, 17, 24, 0, 27)


def make_model(seed: int = 0, **overrides) -> MIMEGenerator:
    return tiny_generator(MIMEGenerator, MIMESettings, TINY, VOCAB, seed=seed, **overrides)


def make_batch(batch_size: int = 4, seed: int = 1, labels: list[int] | None = None) -> dict:
    gen = torch.Generator().manual_seed(seed)
    batch = {**random_context(VOCAB, batch_size, gen), **random_emotion_words(VOCAB, batch_size, gen)}
    target = torch.randint(8, VOCAB, (batch_size, 5), generator=gen)
    target[:, -1] = EOS_ID
    label = torch.tensor(labels) if labels is not None else torch.randint(0, 32, (batch_size,), generator=gen)
    return {**batch, "target_ids": target, "emotion_label": label, "max_oov": 0}


# -- the polarity grouping -------------------------------------------------------------------------
def test_the_groups_are_mimes_13_positive_and_19_negative_emotions() -> None:
    model = make_model()
    positive = model.positive_ids.tolist()
    assert len(positive) == 13 and len(model.negative_ids) == 19
    assert positive == list(positive_emotion_ids())
    assert sorted(positive + model.negative_ids.tolist()) == list(range(32))
    # the original's indices, read in its own label order, name exactly our positive group
    assert {EMOTIONS[i] for i in positive} == {MIME_ORDER[i] for i in MIME_POSITIVE}
    assert model.is_positive.tolist() == [i in positive for i in range(32)]
    assert EMOTIONS[positive[0]] == "caring" and not model.is_positive[EMOTION_TO_ID["anticipating"]]


# -- the emotion classifier and the mixtures -------------------------------------------------------
def test_classifier_is_the_similarity_to_the_emotion_embeddings() -> None:
    model = make_model()
    x0 = torch.randn(3, 16)
    expected = (x0 @ model.classifier_projection.weight.t()) @ model.emotion_embedding.weight.t()
    torch.testing.assert_close(model.emotion_logits(x0), expected)


def test_each_groups_weights_sum_to_one_over_its_own_emotions() -> None:
    model = make_model()
    x0 = torch.randn(5, 16)
    mix = model.emotion_mixture(x0, torch.tensor([True, False, True, False, False]))
    assert mix.positive_weights.shape == (5, 13) and mix.negative_weights.shape == (5, 19)
    torch.testing.assert_close(mix.positive_weights.sum(-1), torch.ones(5))
    torch.testing.assert_close(mix.negative_weights.sum(-1), torch.ones(5))
    assert (mix.positive_weights > 0).all() and (mix.negative_weights > 0).all()
    table = model.emotion_embedding.weight.detach()
    positive = mix.positive_weights @ table[model.positive_ids]
    negative = mix.negative_weights @ table[model.negative_ids]
    torch.testing.assert_close(mix.mimic[0], positive[0])  # positive row: mimics the positive group
    torch.testing.assert_close(mix.non_mimic[0], negative[0])
    torch.testing.assert_close(mix.mimic[1], negative[1])  # negative row: mimics the negative group
    torch.testing.assert_close(mix.non_mimic[1], positive[1])


def test_uniform_weights_give_the_mean_of_each_groups_embeddings() -> None:
    model = make_model()
    with torch.no_grad():
        for prior in (model.positive_prior, model.negative_prior):
            prior.weights.weight.zero_()
            prior.weights.bias.zero_()
    mix = model.emotion_mixture(torch.randn(2, 16), torch.tensor([True, False]))
    torch.testing.assert_close(mix.positive_weights, torch.full((2, 13), 1 / 13))
    table = model.emotion_embedding.weight.detach()
    pos_mean = table[list(positive_emotion_ids())].mean(0)
    neg_mean = table[[i for i in range(32) if i not in positive_emotion_ids()]].mean(0)
    torch.testing.assert_close(mix.mimic, torch.stack([pos_mean, neg_mean]))
    torch.testing.assert_close(mix.non_mimic, torch.stack([neg_mean, pos_mean]))


def test_training_mimics_the_gold_group_and_evaluation_the_predicted_one(monkeypatch) -> None:
    model = make_model()
    seen: list[torch.Tensor] = []
    original = model.emotion_mixture
    monkeypatch.setattr(model, "emotion_mixture", lambda x0, rows: seen.append(rows) or original(x0, rows))
    joyful, sad = EMOTION_TO_ID["joyful"], EMOTION_TO_ID["sad"]
    batch = make_batch(batch_size=2, labels=[joyful, sad])
    model.train()
    model.encode(batch)
    assert seen[-1].tolist() == [True, False]
    model.eval()
    logits = model.encode(batch).emotion_logits
    assert seen[-1].tolist() == model.is_positive[logits.argmax(-1)].tolist()


def test_the_mixture_is_sampled_in_training_only() -> None:
    model, batch = make_model(), make_batch()
    model.train()
    first, second = model.encode(batch), model.encode(batch)
    torch.testing.assert_close(first.x0, second.x0)  # dropout is 0: only z is random
    assert not torch.allclose(first.w0, second.w0)
    model.eval()
    first, second = model.encode(batch), model.encode(batch)
    assert torch.equal(first.w0, second.w0) and torch.equal(first.state.memory, second.state.memory)
    steady = make_model(stochastic=False).train()
    assert torch.equal(steady.encode(batch).w0, steady.encode(batch).w0)


def test_evaluation_mixture_is_the_priors_mean() -> None:
    model = make_model()
    x0 = torch.randn(2, 16)
    h = torch.relu(model.prior_hidden(x0))
    expected = torch.softmax(model.positive_prior.weights(model.positive_prior.mu(h)), dim=-1)
    torch.testing.assert_close(model.emotion_mixture(x0, torch.tensor([True, True])).positive_weights, expected)


# -- the encoder's outputs and the decoder -----------------------------------------------------------
def test_shapes_summaries_and_log_probs() -> None:
    model, batch = make_model(), make_batch()
    out = model(batch)
    assert out.log_probs.shape == (4, 5, VOCAB)
    torch.testing.assert_close(out.log_probs.exp().sum(-1), torch.ones(4, 5))
    enc = out.encoded
    assert enc.x0.shape == enc.w0.shape == (4, 16) and enc.emotion_logits.shape == (4, 32)
    mask = batch["context_pad_mask"]
    memory = enc.state.memory
    torch.testing.assert_close(enc.w0[0], memory[0, ~mask[0]].mean(0))  # w̃0: V's mean over real positions
    assert model.sizes.has_emotion_classifier and not model.sizes.copy


def test_padding_is_never_attended() -> None:
    model, batch = make_model(), make_batch()
    other = {**batch, "context_ids": batch["context_ids"].clone()}
    other["context_ids"][0, -3:] = 11  # different words under the padding mask
    a, b = model(batch), model(other)
    torch.testing.assert_close(a.log_probs[0], b.log_probs[0])
    torch.testing.assert_close(a.encoded.w0[0], b.encoded.w0[0])


def test_the_mixed_emotion_reaches_the_decoder() -> None:
    model, batch = make_model(), make_batch()
    before = model(batch).log_probs
    with torch.no_grad():
        model.emotion_embedding.weight.add_(torch.randn_like(model.emotion_embedding.weight))
    assert not torch.allclose(model(batch).log_probs, before)


def test_decoder_starts_from_sos_and_is_causal() -> None:
    model, batch = make_model(), make_batch()
    enc = model.encode(batch)
    vectors = model.embed_tokens(batch["target_ids"][:, :-1])
    full = model.decode_sequence(enc, vectors)
    changed = vectors.clone()
    changed[:, 2:] = torch.randn_like(changed[:, 2:])
    torch.testing.assert_close(model.decode_sequence(enc, changed)[:, :3], full[:, :3])
    cache = model.new_cache(enc)
    torch.testing.assert_close(model.decode_step(enc, cache, None), full[:, 0])
    assert model.embed_tokens(torch.tensor([SOS_ID])).shape == (1, 16)


def test_gradient_reaches_the_decoder_through_soft_word_vectors() -> None:
    model, batch = make_model().train(), make_batch()
    enc = model.encode(batch)
    soft = torch.softmax(torch.randn(4, 4, VOCAB), dim=-1).requires_grad_(True)
    log_probs = model.decode_sequence(enc, soft @ model.word_embedding.weight)
    log_probs[:, -1, 5].sum().backward()
    assert soft.grad is not None and soft.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.decoder_parameters())


@pytest.mark.parametrize("strategy", ["greedy", "beam", "sample"])
def test_cached_equals_uncached_and_decoding_is_reproducible(strategy: str) -> None:
    model, batch = make_model(), make_batch()
    cfg = dict(strategy=strategy, max_len=10, beam_size=3, top_k=5, seed=7)
    cached = decode(model, batch, DecodingConfig(**cfg, use_cache=True))
    uncached = decode(model, batch, DecodingConfig(**cfg, use_cache=False))
    assert torch.equal(cached, uncached)
    assert torch.equal(decode(model, batch, DecodingConfig(**cfg, use_cache=True)), cached)
    assert cached.shape[1] > 1


def test_beam_differs_from_greedy_somewhere() -> None:  # the beam test above is not vacuous
    model, batch = make_model(), make_batch(batch_size=8, seed=3)
    greedy = decode(model, batch, DecodingConfig(strategy="greedy", max_len=10))
    beam = decode(model, batch, DecodingConfig(strategy="beam", max_len=10, beam_size=4))
    assert greedy.shape != beam.shape or not torch.equal(greedy, beam)


# -- settings and size ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"copy": True}, "model.copy"),
        ({"num_emotions": 8}, "model.num_emotions"),
        ({"latent_dim": 0}, "model.latent_dim"),
    ],
)
def test_impossible_settings_name_the_key(overrides: dict, key: str) -> None:
    with pytest.raises(ValueError, match=key):
        MIMESettings(**overrides)


def test_paper_size_parameter_count() -> None:
    vocab, e, a, f, lat = 20_000, 300, 40, 50, 300
    model = MIMEGenerator(MIMESettings(), vocab_size=vocab)
    ln, ff = 2 * e, (e * f + f) + (f * e + e)
    enc_stack = (2 * ln + 4 * e * a + ff) + ln  # one layer + the final norm
    dec_stack = (3 * ln + 8 * e * a + ff) + ln
    prior = lambda g: 2 * (e * lat + lat) + lat * g + g  # noqa: E731
    expected = (
        vocab * e + (e * vocab + vocab)  # word embedding, output layer
        + 2 * e * e + enc_stack + dec_stack  # encoder and decoder with their input projections
        + 32 * e + e * e  # emotion embeddings, classifier projection
        + (e * e + e) + prior(13) + prior(19)  # the prior
        + 2 * (2 * e * e + enc_stack)  # the mimicking / non-mimicking encoders
        + (2 * e * 2 * e + 2 * e) + (2 * e * e + e)  # the gate
    )  # fmt: skip
    count = sum(p.numel() for p in model.parameters())
    print(f"MIME at paper sizes, vocabulary {vocab}: {count:,} parameters ({count - vocab * (2 * e + 1):,} outside it)")
    assert count == expected
    assert 1.8e6 < count - vocab * (2 * e + 1) < 2.2e6  # ~2.0M besides the vocabulary-sized layers


def test_yaml_builds_the_paper_model() -> None:
    cfg = compose("train", ["model=mime"])
    assert cfg.model.name == "mime" and cfg.model.hidden_dim == 300 and cfg.model.stochastic
    assert list(cfg.adversarial.critics) == ["semantic", "emotion"]  # new models train with critics
    model = build_generator(OmegaConf.to_container(cfg.model, resolve=True), vocab_size=100)
    assert isinstance(model, MIMEGenerator) and model.settings.latent_dim == 300


@pytest.mark.parametrize(
    ("override", "key"), [("model.stochastic=perhaps", "model.stochastic"), ("model.latnt_dim=8", "latnt_dim")]
)
def test_typos_and_wrong_types_fail_at_compose_time(override: str, key: str) -> None:
    with pytest.raises(Exception) as caught:  # noqa: B017 (Hydra's composition error names the key)
        compose("train", ["model=mime", override])
    assert key in f"{caught.value}\n{caught.value.__cause__}"
