"""Decoding strategies on small random models: cache equivalence, beam/greedy relations, constraints."""

from __future__ import annotations

import pytest
import torch
from tiny import random_decoding_batch, tiny_generator
from torch import Tensor, nn

from empdg.data.vocab import EOS_ID
from empdg.models.base import EncodedDialogue, Generator, GeneratorSizes
from empdg.models.decoding import (
    DecodingConfig,
    decode,
    filter_logits,
    greedy_decode,
    sequence_log_probs,
)
from empdg.models.empdg import EmpDGGenerator, EmpDGSettings
from empdg.models.settings import GeneratorSettings

VOCAB = 40
TINY = dict(emb_dim=16, hidden_dim=16, attn_dim=16, num_heads=2, ff_dim=32, max_positions=128)


def random_model(seed: int = 0, **overrides) -> EmpDGGenerator:
    return tiny_generator(EmpDGGenerator, EmpDGSettings, TINY, VOCAB, seed=seed, **overrides)


def random_batch(batch_size: int = 4, seed: int = 1, max_oov: int = 0) -> dict:
    return random_decoding_batch(VOCAB, batch_size, seed, max_oov)


@pytest.mark.parametrize("copy", [False, True])
@pytest.mark.parametrize("strategy", ["greedy", "beam", "sample"])
def test_cached_equals_uncached(copy: bool, strategy: str) -> None:
    model = random_model(copy=copy)
    batch = random_batch(max_oov=1 if copy else 0)
    cfg = dict(strategy=strategy, max_len=12, beam_size=3, top_k=5, seed=7)
    cached = decode(model, batch, DecodingConfig(**cfg, use_cache=True))
    uncached = decode(model, batch, DecodingConfig(**cfg, use_cache=False))
    assert torch.equal(cached, uncached)
    if strategy == "greedy":
        assert torch.equal(greedy_decode(model, batch, max_len=12, use_cache=False), cached)


@pytest.mark.parametrize(
    "switches",
    [
        dict(emotion_classifier=False, emotion_encoder=False, emotion_injection="none"),  # transformer
        dict(emotion_encoder=False, emotion_injection="none"),  # multi_trs
        dict(emotion_encoder=False, emotion_injection="label_embedding"),  # emoprepend
    ],
    ids=["transformer", "multi_trs", "emoprepend"],
)
@pytest.mark.parametrize("strategy", ["greedy", "beam", "sample"])
def test_cached_equals_uncached_for_every_switch_setting(switches: dict, strategy: str) -> None:
    model, batch = random_model(**switches), random_batch()
    cfg = dict(strategy=strategy, max_len=10, beam_size=3, top_k=5, seed=7)
    cached = decode(model, batch, DecodingConfig(**cfg, use_cache=True))
    assert torch.equal(cached, decode(model, batch, DecodingConfig(**cfg, use_cache=False)))


def test_beam_size_one_equals_greedy() -> None:
    model, batch = random_model(), random_batch()
    greedy = greedy_decode(model, batch, max_len=15)
    beam = decode(model, batch, DecodingConfig(strategy="beam", beam_size=1, max_len=15, length_penalty=0.0))
    assert torch.equal(beam, greedy)


def test_beam_finds_at_least_greedy_log_prob() -> None:
    model, batch = random_model(seed=3), random_batch(batch_size=6, seed=4)
    common = dict(max_len=6, min_len=6, length_penalty=0.0)  # fixed length: raw sums are comparable
    greedy = decode(model, batch, DecodingConfig(strategy="greedy", **common))
    beam = decode(model, batch, DecodingConfig(strategy="beam", beam_size=8, **common))
    greedy_lp, greedy_len = sequence_log_probs(model, batch, greedy)
    beam_lp, beam_len = sequence_log_probs(model, batch, beam)
    assert torch.equal(greedy_len, beam_len)
    assert bool((beam_lp >= greedy_lp - 1e-5).all())
    assert bool((beam_lp > greedy_lp + 1e-5).any()), "beam never improved on greedy: test model too flat"


@pytest.mark.parametrize("strategy", ["greedy", "beam", "sample"])
def test_no_repeat_ngram_respected(strategy: str) -> None:
    model = random_model(seed=5)
    with torch.no_grad():  # a degenerate model that loves token 9: it would repeat it forever
        model.output.weight[9] += 5.0 * model.output.weight[9].sign()
    batch = random_batch()
    cfg = DecodingConfig(strategy=strategy, max_len=20, min_len=20, no_repeat_ngram_size=2, beam_size=3, seed=1)
    for row in decode(model, batch, cfg).tolist():
        bigrams = list(zip(row, row[1:]))
        assert len(bigrams) == len(set(bigrams)), row


@pytest.mark.parametrize("strategy", ["greedy", "beam", "sample"])
def test_min_length_respected(strategy: str) -> None:
    model = random_model(seed=2)
    with torch.no_grad():  # constant decoder states that make EOS by far the most likely token
        model.decoder.norm.weight.zero_()
        model.decoder.norm.bias.fill_(1.0)
        model.output.weight[EOS_ID] = 1.0
    batch = random_batch()
    assert greedy_decode(model, batch, max_len=10)[:, 0].eq(EOS_ID).all()
    out = decode(model, batch, DecodingConfig(strategy=strategy, max_len=10, min_len=7, beam_size=3, seed=0))
    assert not out[:, :7].eq(EOS_ID).any()


def test_top_k_one_sampling_equals_greedy() -> None:
    model, batch = random_model(), random_batch()
    greedy = greedy_decode(model, batch, max_len=12)
    sampled = decode(model, batch, DecodingConfig(strategy="sample", top_k=1, temperature=1.7, max_len=12, seed=3))
    assert torch.equal(sampled, greedy)


def test_sampling_is_deterministic_with_seeded_generator() -> None:
    model, batch = random_model(), random_batch(batch_size=8)
    cfg = DecodingConfig(strategy="sample", top_p=0.95, temperature=1.5, max_len=12)
    first = decode(model, batch, cfg, generator=torch.Generator().manual_seed(11))
    second = decode(model, batch, cfg, generator=torch.Generator().manual_seed(11))
    other = decode(model, batch, cfg, generator=torch.Generator().manual_seed(12))
    assert torch.equal(first, second)
    assert not torch.equal(first, other)


def test_filter_logits_keeps_nucleus() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = filter_logits(logits, top_p=0.8).isfinite()
    assert kept.tolist() == [[True, True, False, False]]
    assert filter_logits(logits, top_k=3).isfinite().sum() == 3


def test_invalid_config_rejected() -> None:
    with pytest.raises(ValueError, match="strategy"):
        DecodingConfig(strategy="nucleus")
    with pytest.raises(ValueError, match="min_len"):
        DecodingConfig(min_len=40, max_len=30)
    for seed in ("abc", 1.5, True):
        with pytest.raises(ValueError, match="decoding.seed=.* must be a whole number"):
            DecodingConfig(strategy="sample", seed=seed)
    assert DecodingConfig(strategy="sample", seed=7).seed == 7 and DecodingConfig(seed=None).seed is None


class RunningSumGenerator(Generator):
    """Not EmpDG: the next token depends on x̃0 plus the sum of all previous word vectors.

    Its cache is a [1, B, H] running sum -- the batch on dim 1, unlike EmpDG's -- so decoding works
    only if it leaves the cache to the generator (``reorder_cache``/``repeat_encoded``).
    """

    settings_class = GeneratorSettings

    def __init__(self, settings: GeneratorSettings, vocab_size: int) -> None:
        sizes = GeneratorSizes(vocab_size, 32, settings.emb_dim, settings.hidden_dim, None, False, False)
        super().__init__(settings, sizes)
        self.embedding = nn.Embedding(vocab_size, settings.emb_dim)
        self.context = nn.Linear(settings.emb_dim, settings.hidden_dim)
        self.step_in = nn.Linear(settings.emb_dim, settings.hidden_dim, bias=False)
        self.output = nn.Linear(settings.hidden_dim, vocab_size)

    @property
    def word_embedding(self) -> nn.Embedding:
        return self.embedding

    def encode(self, batch: dict) -> EncodedDialogue:
        x0 = torch.tanh(self.context(self.embedding(batch["context_ids"]).mean(dim=1)))
        return EncodedDialogue(x0=x0, w0=None, emotion_logits=None, state=None)

    def _log_probs(self, running: Tensor) -> Tensor:
        return torch.log_softmax(self.output(torch.tanh(running)), dim=-1)

    def decode_sequence(self, encoded: EncodedDialogue, token_vectors: Tensor) -> Tensor:
        steps = torch.cat([encoded.x0.unsqueeze(1), self.step_in(token_vectors)], dim=1)
        return self._log_probs(steps.cumsum(dim=1))

    def new_cache(self, encoded: EncodedDialogue) -> dict:
        return {"running": None}

    def decode_step(self, encoded: EncodedDialogue, cache: dict, previous: Tensor | None) -> Tensor:
        if previous is None:
            cache["running"] = encoded.x0.unsqueeze(0)
        else:
            cache["running"] = cache["running"] + self.step_in(previous).unsqueeze(0)
        return self._log_probs(cache["running"][0])

    def reorder_cache(self, cache: dict, index: Tensor) -> dict:
        return {"running": cache["running"].index_select(1, index)}

    def decoder_parameters(self) -> list[nn.Parameter]:
        return list(self.step_in.parameters()) + list(self.output.parameters())


@pytest.mark.parametrize("strategy", ["greedy", "beam", "sample"])
def test_decoding_leaves_the_cache_layout_to_the_generator(strategy: str) -> None:
    model = tiny_generator(RunningSumGenerator, GeneratorSettings, dict(emb_dim=8, hidden_dim=8, attn_dim=8), VOCAB)
    batch = random_batch(batch_size=5)
    cfg = dict(strategy=strategy, max_len=10, beam_size=4, top_k=5, seed=3)
    cached = decode(model, batch, DecodingConfig(**cfg, use_cache=True))
    uncached = decode(model, batch, DecodingConfig(**cfg, use_cache=False))
    assert torch.equal(cached, uncached)
    if strategy == "beam":  # beams really were re-ranked (else reordering would go untested)
        assert not torch.equal(cached, greedy_decode(model, batch, max_len=10))
