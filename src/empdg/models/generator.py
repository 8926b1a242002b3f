"""The EmpDG generator (and, by switches, its Transformer and EmoPrepend baselines).

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

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from empdg.data.vocab import LAB_ID, PAD_ID, SOS_ID, UNK_ID
from empdg.models.config import GeneratorConfig
from empdg.models.layers import StackSizes, TransformerDecoder, TransformerEncoder, sinusoidal_positions


@dataclass
class EncodedDialogue:
    """Everything the decoder (and later the critics) needs from the encoders."""

    memory: Tensor
    memory_pad_mask: Tensor
    context_len: int
    context_ext_ids: Tensor
    max_oov: int
    x0: Tensor
    w0: Tensor | None
    emotion_logits: Tensor | None
    first_input: Tensor


@dataclass
class GeneratorOutput:
    log_probs: Tensor
    encoded: EncodedDialogue
    states: Tensor


class EmpDGGenerator(nn.Module):
    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        h = cfg.hidden_dim
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.emb_dim, padding_idx=PAD_ID)
        self.embedding_projection = (
            nn.Linear(cfg.emb_dim, h, bias=False) if cfg.emb_dim != h else nn.Identity()
        )
        self.input_dropout = nn.Dropout(cfg.input_dropout)
        self.register_buffer("positions", sinusoidal_positions(cfg.max_positions, h), persistent=False)
        sizes = StackSizes(
            h, cfg.attn_dim, cfg.num_heads, cfg.ff_dim, cfg.num_layers, cfg.dropout, cfg.attention_dropout
        )
        self.semantic_encoder = TransformerEncoder(sizes)
        self.emotion_encoder = TransformerEncoder(sizes) if cfg.emotion_encoder else None
        n_summary = 2 if cfg.emotion_encoder else 1
        self.emotion_classifier = (
            nn.Linear(n_summary * h, cfg.num_emotions) if cfg.emotion_classifier else None
        )
        self.emotion_projection = (
            nn.Linear(cfg.num_emotions, h) if cfg.emotion_injection == "projection" else None
        )
        self.emotion_embedding = (
            nn.Embedding(cfg.num_emotions, h) if cfg.emotion_injection == "label_embedding" else None
        )
        self.decoder = TransformerDecoder(sizes)
        self.output = nn.Linear(h, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.output.weight = self.embedding.weight
        self.copy_gate = nn.Linear(2 * h, 1) if cfg.copy else None

    # -- embeddings ------------------------------------------------------------------------
    def embed_tokens(self, ids: Tensor) -> Tensor:
        """Word vectors (emb_dim) of in-vocabulary ids; extended (copied) ids read as UNK."""
        return self.embedding(ids.masked_fill(ids >= self.cfg.vocab_size, UNK_ID))

    def _to_hidden(self, vectors: Tensor, start: int = 0) -> Tensor:
        length = vectors.shape[1]
        if start + length > self.cfg.max_positions:
            raise ValueError(
                f"sequence of {start + length} positions exceeds model.max_positions={self.cfg.max_positions}"
            )
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
        return EncodedDialogue(
            memory=memory,
            memory_pad_mask=memory_mask,
            context_len=ctx_ids.shape[1],
            context_ext_ids=batch["context_ext_ids"],
            max_oov=int(batch.get("max_oov", 0)) if self.copy_gate is not None else 0,
            x0=x0,
            w0=w0,
            emotion_logits=logits,
            first_input=self._first_input(logits, ctx_ids.shape[0], ctx_ids.device),
        )

    def _first_input(self, logits: Tensor | None, batch_size: int, device: torch.device) -> Tensor:
        """The decoder's first position [B, H]: the emotion signal, or SOS for the plain Transformer."""
        if self.emotion_projection is not None:
            return self.emotion_projection(logits)
        if self.emotion_embedding is not None:
            return self.emotion_embedding(logits.argmax(dim=-1))
        sos = torch.full((batch_size,), SOS_ID, dtype=torch.long, device=device)
        return self.embedding_projection(self.embedding(sos))

    # -- decoder ---------------------------------------------------------------------------
    def decode_step(
        self, encoded: EncodedDialogue, hidden_inputs: Tensor, start: int = 0, cache: list[dict] | None = None
    ) -> tuple[Tensor, Tensor]:
        """Run the decoder on hidden-size inputs at absolute positions ``start..``; return (log-probs, states)."""
        x = self.input_dropout(hidden_inputs + self.positions[start : start + hidden_inputs.shape[1]])
        states, attention = self.decoder(
            x, encoded.memory, encoded.memory_pad_mask, cache=cache, need_weights=self.copy_gate is not None
        )
        return self.output_log_probs(states, x, attention, encoded), states

    def decoder_inputs(self, encoded: EncodedDialogue, token_vectors: Tensor) -> Tensor:
        """[first_input; projected token vectors] -- teacher forcing or relaxed (soft) tokens."""
        return torch.cat([encoded.first_input.unsqueeze(1), self.embedding_projection(token_vectors)], dim=1)

    def output_log_probs(
        self, states: Tensor, inputs: Tensor, attention: Tensor | None, encoded: EncodedDialogue
    ) -> Tensor:
        """Log-probabilities over the vocabulary, extended by the batch's OOV words when copying."""
        logits = self.output(states)
        if self.copy_gate is None:
            return torch.log_softmax(logits, dim=-1)
        p_gen = torch.sigmoid(self.copy_gate(torch.cat([states, inputs], dim=-1)))
        vocab_probs = torch.softmax(logits, dim=-1) * p_gen
        if encoded.max_oov:
            vocab_probs = nn.functional.pad(vocab_probs, (0, encoded.max_oov))
        # the decoder attends over [C_u; C_e]; only context words can be copied (not [CLS], not the
        # emotion sequence), so renormalise that part -- otherwise the mixture would sum to < 1
        context_attention = attention[:, :, 1 : encoded.context_len]
        context_attention = context_attention / context_attention.sum(dim=-1, keepdim=True).clamp_min(1e-12)
        copy_attention = context_attention * (1 - p_gen)
        index = encoded.context_ext_ids[:, 1:].unsqueeze(1).expand(-1, states.shape[1], -1)
        probs = vocab_probs.scatter_add(2, index, copy_attention)
        return torch.log(probs.clamp_min(1e-12))

    def forward(self, batch: dict) -> GeneratorOutput:
        """Teacher-forced pass: predicts every target token (ending with EOS)."""
        encoded = self.encode(batch)
        token_vectors = self.embed_tokens(batch["target_ids"][:, :-1])
        inputs = self.decoder_inputs(encoded, token_vectors)
        log_probs, states = self.decode_step(encoded, inputs)
        return GeneratorOutput(log_probs=log_probs, encoded=encoded, states=states)

    def decoder_parameters(self) -> list[nn.Parameter]:
        """The decoder side (decoder stack and output layer): where gradients are compared."""
        return list(self.decoder.parameters()) + list(self.output.parameters())

    def new_cache(self) -> list[dict]:
        return [{} for _ in self.decoder.layers]
