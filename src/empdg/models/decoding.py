"""Batched decoding: greedy, beam search and top-k/top-p sampling, for any generator of the seam.

Every strategy shares one step function (feed the newest position through the generator's own cache,
:meth:`~empdg.models.base.Generator.decode_step`) and one set of constraints (minimum length, no-repeat
n-grams); ``use_cache=False`` re-reads the whole prefix each step instead
(:meth:`~empdg.models.base.Generator.decode_sequence`), which gives the same tokens and exists to test
and benchmark the cache. Nothing here knows how a generator lays out its cache or decoder state.
Outputs are ids [B, <=max_len] (extended ids when copying), rows padded with EOS after they finish.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from empdg.data.vocab import EOS_ID, Vocab
from empdg.errors import is_whole
from empdg.models.base import EncodedDialogue, Generator

STRATEGIES = ("greedy", "beam", "sample")


@dataclass
class DecodingConfig:
    """How to decode; built from the Hydra ``decoding`` group (``conf/decoding/*.yaml``).

    ``min_len`` counts generated tokens before EOS may appear; ``top_k=0`` and ``top_p=1.0`` disable
    those filters; ``length_penalty`` is the exponent alpha of the final beam score log p / len^alpha.
    """

    strategy: str = "greedy"
    max_len: int = 30
    min_len: int = 0
    beam_size: int = 5
    length_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    top_k: int = 0
    top_p: float = 1.0
    temperature: float = 1.0
    seed: int | None = None
    use_cache: bool = True

    def __post_init__(self) -> None:
        problems = []
        if self.strategy not in STRATEGIES:
            problems.append(f"decoding.strategy={self.strategy!r} must be one of {STRATEGIES}")
        if self.max_len < 1 or self.min_len < 0 or self.min_len > self.max_len:
            problems.append(
                f"need 0 <= decoding.min_len ({self.min_len}) <= decoding.max_len ({self.max_len}) and max_len >= 1"
            )
        if self.beam_size < 1:
            problems.append("decoding.beam_size must be >= 1")
        if self.top_k < 0 or not 0.0 < self.top_p <= 1.0 or self.temperature <= 0:
            problems.append("need decoding.top_k >= 0, 0 < decoding.top_p <= 1 and decoding.temperature > 0")
        if self.seed is not None and not is_whole(self.seed):
            problems.append(f"decoding.seed={self.seed!r} must be a whole number, or null (an unseeded draw)")
        if problems:
            raise ValueError("invalid decoding configuration: " + "; ".join(problems))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> DecodingConfig:
        """Pick the known keys (the Hydra group may carry comments-only extras such as ``name``)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: values[k] for k in names if k in values})


# -- shared pieces ------------------------------------------------------------------------------
def _banned_ngram_tokens(row: list[int], n: int) -> list[int]:
    """Tokens that would complete an n-gram already present in ``row``."""
    if n <= 0 or len(row) < n - 1:
        return []
    if n == 1:
        return list(set(row))
    prefix = tuple(row[len(row) - n + 1 :])
    return [row[i + n - 1] for i in range(len(row) - n + 1) if tuple(row[i : i + n - 1]) == prefix]


def constrain(log_probs: Tensor, generated: Tensor, cfg: DecodingConfig) -> Tensor:
    """Apply the minimum length (no EOS yet) and the no-repeat n-gram ban to next-token log-probs [N, V]."""
    step = generated.shape[1]
    n = cfg.no_repeat_ngram_size
    ban_eos = step < cfg.min_len
    banned: list[tuple[int, int]] = []
    if n > 0 and step >= n - 1:
        banned = [(i, t) for i, row in enumerate(generated.tolist()) for t in _banned_ngram_tokens(row, n)]
    if not ban_eos and not banned:
        return log_probs
    log_probs = log_probs.clone()
    if ban_eos:
        log_probs[:, EOS_ID] = float("-inf")
    if banned:
        r, c = zip(*banned)
        log_probs[list(r), list(c)] = float("-inf")
    return log_probs


class _Stepper:
    """Feeds one new position per step, with the generator's cache or by re-running the kept prefix."""

    def __init__(self, model: Generator, encoded: EncodedDialogue, use_cache: bool) -> None:
        self.model, self.encoded = model, encoded
        self.cache = model.new_cache(encoded) if use_cache else None
        self.previous: Tensor | None = None  # word vectors of the newest token (None before the first)
        self.prefix = encoded.x0.new_zeros(encoded.batch_size, 0, model.sizes.emb_dim)

    def next_log_probs(self) -> Tensor:
        """Log-probs [N, V] of the token after the current prefix."""
        if self.cache is not None:
            return self.model.decode_step(self.encoded, self.cache, self.previous)
        return self.model.decode_sequence(self.encoded, self.prefix)[:, -1]

    def advance(self, token_ids: Tensor, reorder: Tensor | None = None) -> None:
        """Append ``token_ids`` [N] after selecting prefix rows ``reorder`` (beam search)."""
        if reorder is not None:
            if self.cache is not None:
                self.cache = self.model.reorder_cache(self.cache, reorder)
            else:
                self.prefix = self.prefix.index_select(0, reorder)
        self.previous = self.model.embed_tokens(token_ids)
        if self.cache is None:
            self.prefix = torch.cat([self.prefix, self.previous.unsqueeze(1)], dim=1)


# -- strategies ---------------------------------------------------------------------------------
def filter_logits(logits: Tensor, top_k: int = 0, top_p: float = 1.0) -> Tensor:
    """Set everything outside the top-k / the smallest nucleus with mass >= top_p to -inf."""
    if top_k > 0 and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        before = probs.cumsum(dim=-1) - probs  # mass strictly before each token
        remove_sorted = before >= top_p
        remove_sorted[:, 0] = False
        remove = torch.zeros_like(remove_sorted).scatter(1, order, remove_sorted)
        logits = logits.masked_fill(remove, float("-inf"))
    return logits


def _token_by_token(
    model: Generator, encoded: EncodedDialogue, cfg: DecodingConfig, generator: torch.Generator | None
) -> Tensor:
    """Greedy (``strategy='greedy'``) or ancestral sampling: one token per row per step."""
    batch_size, device = encoded.batch_size, encoded.device
    stepper = _Stepper(model, encoded, cfg.use_cache)
    generated = torch.empty(batch_size, 0, dtype=torch.long, device=device)
    finished = torch.zeros(batch_size, dtype=torch.bool, device=device)
    for _ in range(cfg.max_len):
        log_probs = constrain(stepper.next_log_probs(), generated, cfg)
        if cfg.strategy == "greedy":
            next_ids = log_probs.argmax(dim=-1)
        else:
            logits = filter_logits(log_probs / cfg.temperature, cfg.top_k, cfg.top_p)
            next_ids = torch.multinomial(logits.softmax(dim=-1), 1, generator=generator).squeeze(1)
        next_ids = next_ids.masked_fill(finished, EOS_ID)
        generated = torch.cat([generated, next_ids.unsqueeze(1)], dim=1)
        finished |= next_ids.eq(EOS_ID)
        if bool(finished.all()):
            break
        stepper.advance(next_ids)
    return generated


def _beam_search(model: Generator, encoded: EncodedDialogue, cfg: DecodingConfig) -> Tensor:
    """Batched beam search; finished hypotheses stay in the beam, extended by EOS at no cost.

    The best hypothesis per example maximises sum log p / length^length_penalty (length counts EOS).
    """
    batch_size, k = encoded.batch_size, cfg.beam_size
    device = encoded.device
    stepper = _Stepper(model, model.repeat_encoded(encoded, k), cfg.use_cache)
    rows = batch_size * k
    scores = torch.full((batch_size, k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all beams start identical: expand only the first
    tokens = torch.empty(rows, 0, dtype=torch.long, device=device)
    finished = torch.zeros(rows, dtype=torch.bool, device=device)
    lengths = torch.zeros(rows, device=device)
    base = (torch.arange(batch_size, device=device) * k).unsqueeze(1)
    for _ in range(cfg.max_len):
        log_probs = constrain(stepper.next_log_probs(), tokens, cfg)
        vocab = log_probs.shape[-1]
        done_row = torch.full_like(log_probs[0], float("-inf"))
        done_row[EOS_ID] = 0.0
        log_probs = torch.where(finished.unsqueeze(1), done_row, log_probs)
        candidates = (scores.view(rows, 1) + log_probs).view(batch_size, k * vocab)
        scores, flat = candidates.topk(k, dim=-1)
        source = (base + torch.div(flat, vocab, rounding_mode="floor")).view(-1)
        next_ids = (flat % vocab).view(-1)
        was_finished = finished.index_select(0, source)
        tokens = torch.cat([tokens.index_select(0, source), next_ids.unsqueeze(1)], dim=1)
        lengths = lengths.index_select(0, source) + (~was_finished).float()
        finished = was_finished | next_ids.eq(EOS_ID)
        if bool(finished.all()):
            break
        stepper.advance(next_ids, reorder=source)
    normalised = scores / lengths.view(batch_size, k).clamp_min(1.0) ** cfg.length_penalty
    best = base.squeeze(1) + normalised.argmax(dim=-1)
    return tokens.index_select(0, best)


@torch.no_grad()
def decode(model: Generator, batch: dict, cfg: DecodingConfig, generator: torch.Generator | None = None) -> Tensor:
    """Decode a batch with ``cfg``; sampling draws from ``generator`` (or one seeded by ``cfg.seed``)."""
    return decode_encoded(model, model.encode(batch), cfg, generator)


@torch.no_grad()
def decode_encoded(
    model: Generator, encoded: EncodedDialogue, cfg: DecodingConfig, generator: torch.Generator | None = None
) -> Tensor:
    """:func:`decode` from an already encoded batch (training reuses its encoder pass)."""
    if cfg.strategy == "beam":
        return _beam_search(model, encoded, cfg)
    if cfg.strategy == "sample" and generator is None and cfg.seed is not None:
        generator = torch.Generator(device=encoded.device).manual_seed(int(cfg.seed))
    return _token_by_token(model, encoded, cfg, generator)


@torch.no_grad()
def greedy_decode(model: Generator, batch: dict, max_len: int = 30, use_cache: bool = True) -> Tensor:
    """Return generated ids [B, <=max_len] (extended ids when copying), EOS included when reached.

    With ``use_cache`` each step feeds only the newest position and reuses cached keys/values;
    without it the decoder re-reads the whole prefix each step (the original code's approach).
    Both give identical tokens.
    """
    return decode(model, batch, DecodingConfig(strategy="greedy", max_len=max_len, use_cache=use_cache))


def generated_mask(ids: Tensor) -> Tensor:
    """Positions up to and including the first EOS (gold responses also end with their EOS)."""
    is_eos = ids.eq(EOS_ID).long()
    return (is_eos.cumsum(dim=1) - is_eos).eq(0)


def sequence_log_prob(model: Generator, encoded: EncodedDialogue, ids: Tensor) -> Tensor:
    """Teacher-forced sum of log p(ids_t | ids_<t, dialogue) of each row up to and including the first EOS,
    with gradient (REINFORCE's log-likelihood of its samples)."""
    log_probs = model.decode_sequence(encoded, model.embed_tokens(ids[:, :-1]))
    token_lp = log_probs.gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    return (token_lp * generated_mask(ids)).sum(dim=1)


@torch.no_grad()
def sequence_log_probs(model: Generator, batch: dict, ids: Tensor) -> tuple[Tensor, Tensor]:
    """Teacher-forced (sum of token log-probs, length) of each row of ``ids`` up to and including EOS.

    Used to compare decoders (beam vs greedy) and to rank sampled candidates by likelihood.
    """
    return sequence_log_prob(model, model.encode(batch), ids), generated_mask(ids).sum(dim=1)


def ids_to_text(ids: list[int], vocab: Vocab, oovs: list[str]) -> str:
    """Whitespace-joined tokens up to EOS; extended ids become the copied context word.

    A subword vocabulary detokenises the pieces and re-tokenises the text as ED references are.
    """
    if vocab.unit != "word":
        return " ".join(vocab.decode(ids))
    words = []
    for token_id in ids:
        if token_id == EOS_ID:
            break
        if token_id >= len(vocab):
            k = token_id - len(vocab)
            words.append(oovs[k] if k < len(oovs) else vocab.id_to_token(1))
        else:
            words.extend(vocab.decode([token_id], strip_special=True, stop_at_eos=True))
    return " ".join(words)
