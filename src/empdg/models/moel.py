"""MoEL: Mixture of Empathetic Listeners (Lin et al., EMNLP 2019) as a generator of this framework.

Emotion tracker: ``[CLS] context`` with word + position + dialogue-state embeddings, a transformer
encoder (EmpDG's semantic encoder); its [CLS] state x̃0 feeds a linear classifier over 32 emotions.
Listeners: one transformer decoder layer per emotion plus, with ``shared_listener``, a shared one;
each reads the decoder inputs (SOS, then the target tokens) and attends over the context.
Meta-listener: the listeners' output states are summed, weighted by the emotion distribution (a
softmax of the classifier's logits, over the ``top_k`` most probable emotions only when ``top_k > 0``;
the shared listener always weighs 1), and a transformer decoder over that sum gives the states the
output layer reads. This is MoEL's README run (``--topk 5 --softmax --basic_learner --schedule 10000``).

``oracle`` (the paper's MoE+oracle) weighs the listeners by the gold emotion's one-hot in training
*and* in inference, so every batch must carry ``emotion_label``. ``oracle_schedule`` is MoEL's
``--schedule``: in training, a batch uses the gold one-hot with probability
1e-4 + (1 - 1e-4) exp(-n / schedule), n counting the training-mode encodings so far.

Departures from the original code, each to fit this framework: one word-to-hidden projection
(identity when ``emb_dim == hidden_dim``) serves encoder and decoder, where MoEL has one per side;
the emotion loss is the framework's (cross-entropy on ``emotion_logits``, as ``--softmax``); the
scheduled oracle counts encodings, not optimiser steps (the adversarial phase encodes more than once
per step), and decides for the batch at hand, where MoEL's draw applies to the next one; listeners
whose weight is zero in every row of a batch are skipped -- they add exactly nothing, and receive no
gradient in MoEL either. No copy mechanism (MoEL's run has no pointer-generator).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from empdg.data.vocab import PAD_ID, SOS_ID
from empdg.models.base import EncodedDialogue, Generator, GeneratorSizes
from empdg.models.layers import DecoderLayer, StackSizes, TransformerDecoder, TransformerEncoder, sinusoidal_positions
from empdg.models.registry import register_generator
from empdg.models.settings import GeneratorSettings

ORACLE_FLOOR = 1e-4  # MoEL's scheduled oracle never quite vanishes


@dataclass
class MoELSettings(GeneratorSettings):
    """MoEL's switches on top of the shared sizes; the defaults are the README's run.

    ``top_k=0`` weighs every listener by the full softmax; ``shared_listener`` is ``--basic_learner``;
    ``oracle_schedule=0`` turns the scheduled oracle off.
    """

    top_k: int = 5
    shared_listener: bool = True
    oracle: bool = False
    oracle_schedule: int = 10_000

    def problems(self) -> list[str]:
        problems = super().problems()
        if self.copy:
            problems.append("model.copy=true: moel has no copy mechanism; set model.copy=false")
        if not 0 <= self.top_k <= self.num_emotions:
            problems.append(
                f"model.top_k={self.top_k} must be in [0, model.num_emotions={self.num_emotions}] "
                "(0 weighs every listener)"
            )
        if self.oracle_schedule < 0:
            problems.append(f"model.oracle_schedule={self.oracle_schedule} must be >= 0 (0 turns it off)")
        return problems


def listener_weights(logits: Tensor, top_k: int) -> Tensor:
    """The meta-listener's weights [B, E]: softmax of the emotion logits, renormalised over the
    ``top_k`` largest when ``top_k > 0`` (the others weigh exactly 0, as MoEL's -inf masking)."""
    if 0 < top_k < logits.shape[-1]:
        values, index = logits.topk(top_k, dim=-1)
        logits = torch.full_like(logits, float("-inf")).scatter(-1, index, values)
    return torch.softmax(logits, dim=-1)


def oracle_probability(encodings: int, schedule: int) -> float:
    """How likely the scheduled oracle uses the gold emotion after ``encodings`` training batches."""
    return ORACLE_FLOOR + (1 - ORACLE_FLOOR) * math.exp(-encodings / schedule)


@dataclass
class MoELState:
    """The decoder's view of an encoded batch."""

    memory: Tensor  # [B, Tc, H] the encoded context
    memory_pad_mask: Tensor  # [B, Tc]
    weights: Tensor  # [B, E] each emotion listener's weight
    # which listeners some row weighs (the others add exactly 0 and are skipped): read once per encoding,
    # not at every decoding step
    active: tuple[bool, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.active = tuple(self.weights.ne(0).any(dim=0).tolist())


@dataclass
class MoELCache:
    """Keys/values of every listener (one layer each), of the meta-listener's layers, and the position."""

    listeners: list[dict] = field(default_factory=list)
    shared: dict = field(default_factory=dict)
    meta: list[dict] = field(default_factory=list)
    position: int = 0


@register_generator("moel")
class MoELGenerator(Generator):
    settings_class = MoELSettings

    def __init__(self, settings: MoELSettings, vocab_size: int) -> None:
        sizes = GeneratorSizes.from_settings(settings, vocab_size, has_emotion_classifier=True)
        super().__init__(settings, sizes)
        cfg = settings
        h = cfg.hidden_dim
        self.embedding = nn.Embedding(vocab_size, cfg.emb_dim, padding_idx=PAD_ID)
        self.embedding_projection = nn.Linear(cfg.emb_dim, h, bias=False) if cfg.emb_dim != h else nn.Identity()
        self.input_dropout = nn.Dropout(cfg.input_dropout)
        self.register_buffer("positions", sinusoidal_positions(cfg.max_positions, h), persistent=False)
        stack = StackSizes.from_settings(cfg)
        self.encoder = TransformerEncoder(stack)
        self.emotion_classifier = nn.Linear(h, cfg.num_emotions, bias=False)  # MoEL's decoder_key
        listener = dataclasses.replace(stack, layers=1)  # a listener is one layer whatever num_layers is
        self.listeners = nn.ModuleList(DecoderLayer(listener) for _ in range(cfg.num_emotions))
        self.shared_listener = DecoderLayer(listener) if cfg.shared_listener else None
        self.meta_listener = TransformerDecoder(stack)
        self.output = nn.Linear(h, vocab_size)
        if cfg.tie_embeddings:
            self.output.weight = self.embedding.weight
        # training-mode encodings so far: the scheduled oracle's clock, kept in checkpoints
        self.register_buffer("oracle_clock", torch.zeros((), dtype=torch.long))

    @property
    def word_embedding(self) -> nn.Embedding:
        return self.embedding

    def _to_hidden(self, vectors: Tensor, start: int = 0) -> Tensor:
        end = start + vectors.shape[1]
        if end > self.settings.max_positions:
            raise ValueError(f"sequence of {end} positions exceeds model.max_positions={self.settings.max_positions}")
        return self.input_dropout(self.embedding_projection(vectors) + self.positions[start:end])

    # -- emotion tracker -----------------------------------------------------------------------
    def encode(self, batch: dict) -> EncodedDialogue:
        ctx_ids, ctx_mask = batch["context_ids"], batch["context_pad_mask"]
        memory = self.encoder(
            self._to_hidden(self.embedding(ctx_ids) + self.embedding(batch["context_state"])), ctx_mask
        )
        x0 = memory[:, 0]
        logits = self.emotion_classifier(x0)
        if self._use_oracle():
            labels = batch.get("emotion_label")
            if labels is None:
                raise ValueError(
                    "model.oracle=true weighs the listeners by the gold emotion, but this batch has no "
                    "emotion_label; set model.oracle=false to use the predicted emotion"
                )
            weights = nn.functional.one_hot(labels, self.settings.num_emotions).to(logits.dtype)
        else:
            weights = listener_weights(logits, self.settings.top_k)
        state = MoELState(memory=memory, memory_pad_mask=ctx_mask, weights=weights)
        return EncodedDialogue(x0=x0, w0=None, emotion_logits=logits, state=state)

    def _use_oracle(self) -> bool:
        """The gold emotion always with ``oracle``; by MoEL's decaying schedule in training otherwise."""
        if self.settings.oracle:
            return True
        if not self.training or self.settings.oracle_schedule == 0:
            return False
        p = oracle_probability(int(self.oracle_clock), self.settings.oracle_schedule)
        self.oracle_clock += 1
        return bool(torch.rand(()) < p)

    # -- listeners and meta-listener ---------------------------------------------------------
    def decode_sequence(self, encoded: EncodedDialogue, token_vectors: Tensor) -> Tensor:
        sos = self._sos(encoded.batch_size, token_vectors.device).unsqueeze(1)
        return self._decode(encoded.state, torch.cat([sos, token_vectors], dim=1))

    def new_cache(self, encoded: EncodedDialogue) -> MoELCache:
        return MoELCache(
            listeners=[{} for _ in self.listeners], shared={}, meta=[{} for _ in self.meta_listener.layers]
        )

    def decode_step(self, encoded: EncodedDialogue, cache: MoELCache, previous: Tensor | None) -> Tensor:
        if (previous is None) != (cache.position == 0):
            raise ValueError("decode_step takes previous=None at the first step only, and word vectors after it")
        inputs = self._sos(encoded.batch_size, encoded.device) if previous is None else previous
        log_probs = self._decode(encoded.state, inputs.unsqueeze(1), start=cache.position, cache=cache)
        cache.position += 1
        return log_probs[:, 0]

    def _sos(self, batch_size: int, device: torch.device) -> Tensor:
        return self.embedding(torch.full((batch_size,), SOS_ID, dtype=torch.long, device=device))

    def _decode(self, state: MoELState, word_vectors: Tensor, start: int = 0, cache: MoELCache | None = None) -> Tensor:
        """Listeners, meta-listener and output on word vectors at positions ``start..``: log-probs [B, T, V]."""
        x = self._to_hidden(word_vectors, start)
        mixed = self.listen(x, state, cache)
        meta_cache = None if cache is None else cache.meta
        states, _ = self.meta_listener(mixed, state.memory, state.memory_pad_mask, cache=meta_cache)
        return torch.log_softmax(self.output(states), dim=-1)

    def listen(self, x: Tensor, state: MoELState, cache: MoELCache | None = None) -> Tensor:
        """The meta-listener's input [B, T, H]: sum_i weight_i * listener_i(x), plus the shared listener's."""
        mixed = torch.zeros_like(x)
        for i, listener in enumerate(self.listeners):
            if not state.active[i]:
                continue
            layer_cache = None if cache is None else cache.listeners[i]
            if cache is not None and cache.position > 0 and not layer_cache:
                raise RuntimeError(f"listener {i} became active mid-decoding: its cache misses earlier steps")
            out, _ = listener(x, state.memory, state.memory_pad_mask, cache=layer_cache)
            mixed = mixed + state.weights[:, i, None, None] * out
        if self.shared_listener is not None:
            out, _ = self.shared_listener(
                x, state.memory, state.memory_pad_mask, cache=None if cache is None else cache.shared
            )
            mixed = mixed + out
        return mixed

    def decoder_parameters(self) -> list[nn.Parameter]:
        """The listeners, the meta-listener and the output layer."""
        modules = [self.listeners, self.shared_listener, self.meta_listener, self.output]
        return [p for module in modules if module is not None for p in module.parameters()]
