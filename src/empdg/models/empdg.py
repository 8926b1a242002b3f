"""The EmpDG generator (and, by switches, its Transformer, Multi-TRS and EmoPrepend baselines).

Semantic understanding: ``[CLS] context`` with word + position + dialogue-state embeddings, a
transformer encoder -> C_u; its first state x̃0 summarises the dialogue.
Multi-resolution emotion perception: a *separate* encoder over ``[LAB] w_1..w_e`` (the context's
emotion words) -> C_e and w̃0; the classifier reads [w̃0; x̃0] (x̃0 alone without the emotion
encoder) and predicts one of 32 emotions.
Empathetic decoder: the projected emotion signal W_ep e_p is the first decoder input, then the
target tokens; causal self-attention, cross-attention over [C_u; C_e]; an optional
pointer-generator copies context words, including ones outside the vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from empdg.data.vocab import LAB_ID, PAD_ID, SOS_ID
from empdg.models.base import EncodedDialogue, Generator, GeneratorSizes
from empdg.models.layers import StackSizes, TransformerDecoder, TransformerEncoder, sinusoidal_positions
from empdg.models.registry import register_generator
from empdg.models.settings import GeneratorSettings

EMOTION_INJECTIONS = ("none", "projection", "label_embedding")


@dataclass
class EmpDGSettings(GeneratorSettings):
    """EmpDG's switches on top of the shared sizes; the defaults are the full model.

    ``emotion_injection`` selects how the predicted emotion reaches the decoder's first input:
    ``projection`` is EmpDG's W_ep e_p (differentiable), ``label_embedding`` is EmoPrepend's
    embedding of the arg-max label, ``none`` is a plain Transformer (SOS starts decoding).
    """

    emotion_classifier: bool = True
    emotion_encoder: bool = True
    emotion_injection: str = "projection"

    def problems(self) -> list[str]:
        problems = super().problems()
        if self.emotion_injection not in EMOTION_INJECTIONS:
            problems.append(f"model.emotion_injection={self.emotion_injection!r} must be one of {EMOTION_INJECTIONS}")
        if self.emotion_injection != "none" and not self.emotion_classifier:
            problems.append(
                "model.emotion_injection needs model.emotion_classifier=true (it injects the predicted emotion)"
            )
        if self.emotion_encoder and not self.emotion_classifier:
            problems.append("model.emotion_encoder=true needs model.emotion_classifier=true (the encoder feeds it)")
        return problems


@dataclass
class EmpDGState:
    """The decoder's view of an encoded batch."""

    memory: Tensor  # [B, Tm, H]: C_u, or [C_u; C_e]
    memory_pad_mask: Tensor  # [B, Tm]
    context_len: int  # C_u's share of the memory (the copyable part)
    context_ext_ids: Tensor  # [B, Tc] context ids with OOV words as extended ids
    max_oov: int  # extra output slots for copied OOV words (0 without copying)
    first_input: Tensor  # [B, H] the decoder's first input: the emotion signal, or SOS


@dataclass
class EmpDGCache:
    """Per-layer keys/values of the decoder and the next position to feed."""

    layers: list[dict] = field(default_factory=list)
    position: int = 0


@register_generator("empdg", "transformer", "emoprepend", "multi_trs")
class EmpDGGenerator(Generator):
    settings_class = EmpDGSettings

    def __init__(self, settings: EmpDGSettings, vocab_size: int) -> None:
        sizes = GeneratorSizes.from_settings(
            settings, vocab_size, has_emotion_classifier=settings.emotion_classifier, copy=settings.copy
        )
        super().__init__(settings, sizes)
        cfg = settings
        h = cfg.hidden_dim
        self.embedding = nn.Embedding(vocab_size, cfg.emb_dim, padding_idx=PAD_ID)
        self.embedding_projection = nn.Linear(cfg.emb_dim, h, bias=False) if cfg.emb_dim != h else nn.Identity()
        self.input_dropout = nn.Dropout(cfg.input_dropout)
        self.register_buffer("positions", sinusoidal_positions(cfg.max_positions, h), persistent=False)
        stack = StackSizes.from_settings(cfg)
        self.semantic_encoder = TransformerEncoder(stack)
        self.emotion_encoder = TransformerEncoder(stack) if cfg.emotion_encoder else None
        n_summary = 2 if cfg.emotion_encoder else 1
        self.emotion_classifier = nn.Linear(n_summary * h, cfg.num_emotions) if cfg.emotion_classifier else None
        self.emotion_projection = nn.Linear(cfg.num_emotions, h) if cfg.emotion_injection == "projection" else None
        self.emotion_embedding = (
            nn.Embedding(cfg.num_emotions, h) if cfg.emotion_injection == "label_embedding" else None
        )
        self.decoder = TransformerDecoder(stack)
        self.output = nn.Linear(h, vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.output.weight = self.embedding.weight
        self.copy_gate = nn.Linear(2 * h, 1) if cfg.copy else None

    # -- embeddings ------------------------------------------------------------------------
    @property
    def word_embedding(self) -> nn.Embedding:
        return self.embedding

    def _to_hidden(self, vectors: Tensor, start: int = 0) -> Tensor:
        length = vectors.shape[1]
        limit = self.settings.max_positions
        if start + length > limit:
            raise ValueError(f"sequence of {start + length} positions exceeds model.max_positions={limit}")
        return self.input_dropout(self.embedding_projection(vectors) + self.positions[start : start + length])

    # -- encoders --------------------------------------------------------------------------
    def encode(self, batch: dict) -> EncodedDialogue:
        ctx_ids, ctx_mask = batch["context_ids"], batch["context_pad_mask"]
        semantic_in = self.embedding(ctx_ids) + self.embedding(batch["context_state"])
        c_u = self.semantic_encoder(self._to_hidden(semantic_in), ctx_mask)
        x0 = c_u[:, 0]
        memory, memory_mask, w0 = c_u, ctx_mask, None
        if self.emotion_encoder is not None:
            emo_ids, emo_mask = batch["emotion_context_ids"], batch["emotion_context_pad_mask"]
            emotion_in = self.embedding(emo_ids) + self.embedding(torch.full_like(emo_ids, LAB_ID))
            c_e = self.emotion_encoder(self._to_hidden(emotion_in), emo_mask)
            w0 = c_e[:, 0]
            memory = torch.cat([c_u, c_e], dim=1)
            memory_mask = torch.cat([ctx_mask, emo_mask], dim=1)
        logits = None
        if self.emotion_classifier is not None:
            summary = x0 if w0 is None else torch.cat([w0, x0], dim=-1)
            logits = self.emotion_classifier(summary)
        state = EmpDGState(
            memory=memory,
            memory_pad_mask=memory_mask,
            context_len=ctx_ids.shape[1],
            context_ext_ids=batch["context_ext_ids"],
            max_oov=int(batch.get("max_oov", 0)) if self.copy_gate is not None else 0,
            first_input=self._first_input(logits, ctx_ids.shape[0], ctx_ids.device),
        )
        return EncodedDialogue(x0=x0, w0=w0, emotion_logits=logits, state=state)

    def _first_input(self, logits: Tensor | None, batch_size: int, device: torch.device) -> Tensor:
        """The decoder's first position [B, H]: the emotion signal, or SOS for the plain Transformer."""
        if self.emotion_projection is not None:
            return self.emotion_projection(logits)
        if self.emotion_embedding is not None:
            return self.emotion_embedding(logits.argmax(dim=-1))
        sos = torch.full((batch_size,), SOS_ID, dtype=torch.long, device=device)
        return self.embedding_projection(self.embedding(sos))

    # -- decoder ---------------------------------------------------------------------------
    def decode_sequence(self, encoded: EncodedDialogue, token_vectors: Tensor) -> Tensor:
        state: EmpDGState = encoded.state
        inputs = torch.cat([state.first_input.unsqueeze(1), self.embedding_projection(token_vectors)], dim=1)
        return self._decode(state, inputs)

    def new_cache(self, encoded: EncodedDialogue) -> EmpDGCache:
        return EmpDGCache(layers=[{} for _ in self.decoder.layers])

    def decode_step(self, encoded: EncodedDialogue, cache: EmpDGCache, previous: Tensor | None) -> Tensor:
        state: EmpDGState = encoded.state
        if (previous is None) != (cache.position == 0):
            raise ValueError("decode_step takes previous=None at the first step only, and word vectors after it")
        inputs = state.first_input if previous is None else self.embedding_projection(previous)
        log_probs = self._decode(state, inputs.unsqueeze(1), start=cache.position, cache=cache.layers)
        cache.position += 1
        return log_probs[:, 0]

    def _decode(self, state: EmpDGState, hidden_inputs: Tensor, start: int = 0, cache: list | None = None) -> Tensor:
        """The decoder on hidden-size inputs at absolute positions ``start..``: log-probs [B, T, V']."""
        end = start + hidden_inputs.shape[1]
        if end > self.settings.max_positions:
            raise ValueError(f"decoding {end} positions exceeds model.max_positions={self.settings.max_positions}")
        x = self.input_dropout(hidden_inputs + self.positions[start:end])
        states, attention = self.decoder(
            x, state.memory, state.memory_pad_mask, cache=cache, need_weights=self.copy_gate is not None
        )
        return self._output_log_probs(states, x, attention, state)

    def _output_log_probs(self, states: Tensor, inputs: Tensor, attention: Tensor | None, state: EmpDGState) -> Tensor:
        """Log-probabilities over the vocabulary, extended by the batch's OOV words when copying."""
        logits = self.output(states)
        if self.copy_gate is None:
            return torch.log_softmax(logits, dim=-1)
        p_gen = torch.sigmoid(self.copy_gate(torch.cat([states, inputs], dim=-1)))
        vocab_probs = torch.softmax(logits, dim=-1) * p_gen
        if state.max_oov:
            vocab_probs = nn.functional.pad(vocab_probs, (0, state.max_oov))
        # the decoder attends over [C_u; C_e]; only context words can be copied (not [CLS], not the
        # emotion sequence), so renormalise that part -- otherwise the mixture would sum to < 1
        context_attention = attention[:, :, 1 : state.context_len]
        context_attention = context_attention / context_attention.sum(dim=-1, keepdim=True).clamp_min(1e-12)
        copy_attention = context_attention * (1 - p_gen)
        index = state.context_ext_ids[:, 1:].unsqueeze(1).expand(-1, states.shape[1], -1)
        probs = vocab_probs.scatter_add(2, index, copy_attention)
        return torch.log(probs.clamp_min(1e-12))

    def decoder_parameters(self) -> list[nn.Parameter]:
        """The decoder stack and the output layer."""
        return list(self.decoder.parameters()) + list(self.output.parameters())
