"""Seq2Seq with attention: the recurrent baseline of the Seq2Seq-vs-Transformer comparison.

Encoder: an RNN (GRU or LSTM, bidirectional by default) over the context's word vectors plus the
dialogue-state embedding (``context_state``, as EmpDG's encoder reads it), packed so padding never
changes a row's result. x̃0 is the final encoder state, both directions concatenated and projected
to ``hidden_dim`` (tanh); the same bridge, layer by layer, initialises the decoder RNN.
Decoder: an RNN started from SOS's word vector, then the target tokens; at each position its state
h_t attends over the encoder states (padding masked) with Bahdanau's additive score
v·tanh(W_q h + W_m m) or Luong's general (multiplicative) score h·W m, and the attentional state
h̃_t = tanh(W_c [c_t; h_t]) gives the output distribution (Luong et al. 2015, "global attention").

Departures, and why: no input feeding (h̃_{t-1} is not fed back into the RNN) and attention after
the RNN step rather than before it (Bahdanau), so teacher forcing runs the whole target in one RNN
call -- "additive" names the score function only. The inherited transformer keys ``num_heads``,
``attn_dim``, ``ff_dim`` and ``max_positions`` are unused (the additive score's width is
``hidden_dim``; an RNN has no length limit); ``num_heads`` still has to divide ``hidden_dim`` because
the shared checks say so. ``dropout`` acts between RNN layers and on h̃_t, ``attention_dropout`` on
the attention weights, ``input_dropout`` on the word vectors. No copy mechanism (``copy`` refused).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from empdg.data.vocab import PAD_ID, SOS_ID
from empdg.models.base import EncodedDialogue, Generator, GeneratorSizes
from empdg.models.registry import register_generator
from empdg.models.settings import GeneratorSettings

RNN_TYPES = ("gru", "lstm")
ATTENTIONS = ("additive", "multiplicative")


@dataclass
class Seq2SeqSettings(GeneratorSettings):
    """The recurrent switches on top of the shared sizes; the defaults are the baseline as compared."""

    rnn_type: str = "gru"
    attention: str = "additive"
    bidirectional_encoder: bool = True
    emotion_classifier: bool = False  # an emotion head on x̃0 (multitask only; the decoder never sees it)

    def problems(self) -> list[str]:
        problems = super().problems()
        if self.rnn_type not in RNN_TYPES:
            problems.append(f"model.rnn_type={self.rnn_type!r} must be one of {RNN_TYPES}")
        if self.attention not in ATTENTIONS:
            problems.append(f"model.attention={self.attention!r} must be one of {ATTENTIONS}")
        if self.copy:
            problems.append("model.copy=true: seq2seq has no copy mechanism (set model.copy=false)")
        return problems


class AdditiveAttention(nn.Module):
    """Bahdanau's score v·tanh(W_q q + W_m m + b) over the memory positions."""

    def __init__(self, query_dim: int, memory_dim: int, attn_dim: int) -> None:
        super().__init__()
        self.query = nn.Linear(query_dim, attn_dim, bias=False)
        self.key = nn.Linear(memory_dim, attn_dim)
        self.score = nn.Linear(attn_dim, 1, bias=False)

    def scores(self, queries: Tensor, memory: Tensor) -> Tensor:
        """[B, T, Hq] x [B, S, M] -> [B, T, S]."""
        mixed = self.query(queries).unsqueeze(2) + self.key(memory).unsqueeze(1)
        return self.score(torch.tanh(mixed)).squeeze(-1)


class MultiplicativeAttention(nn.Module):
    """Luong's "general" score q·W m over the memory positions."""

    def __init__(self, query_dim: int, memory_dim: int) -> None:
        super().__init__()
        self.key = nn.Linear(memory_dim, query_dim, bias=False)

    def scores(self, queries: Tensor, memory: Tensor) -> Tensor:
        """[B, T, Hq] x [B, S, M] -> [B, T, S]."""
        return queries @ self.key(memory).transpose(1, 2)


def attend(
    scorer: AdditiveAttention | MultiplicativeAttention,
    queries: Tensor,
    memory: Tensor,
    pad_mask: Tensor,
    dropout: nn.Module | None = None,
) -> tuple[Tensor, Tensor]:
    """Context vectors [B, T, M] and weights [B, T, S]; padded positions (True in ``pad_mask``) get 0."""
    scores = scorer.scores(queries, memory).masked_fill(pad_mask.unsqueeze(1), float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    if dropout is not None:
        weights = dropout(weights)
    return weights @ memory, weights


@dataclass
class Seq2SeqState:
    """The decoder's view of an encoded batch; every tensor has the batch on dim 0."""

    memory: Tensor  # [B, S, dirs * H] encoder states
    memory_pad_mask: Tensor  # [B, S] True = padding
    hidden: Tensor  # [B, L, H] the decoder RNN's initial state
    cell: Tensor | None  # [B, L, H] its initial LSTM cell, None for a GRU


@register_generator("seq2seq")
class Seq2SeqGenerator(Generator):
    settings_class = Seq2SeqSettings

    def __init__(self, settings: Seq2SeqSettings, vocab_size: int) -> None:
        sizes = GeneratorSizes.from_settings(
            settings, vocab_size, has_emotion_classifier=settings.emotion_classifier, positional=False
        )
        super().__init__(settings, sizes)
        cfg = settings
        h, layers = cfg.hidden_dim, cfg.num_layers
        rnn_class = nn.GRU if cfg.rnn_type == "gru" else nn.LSTM
        between_layers = cfg.dropout if layers > 1 else 0.0  # nn.RNN warns about dropout on one layer
        directions = 2 if cfg.bidirectional_encoder else 1
        memory_dim = directions * h
        self.embedding = nn.Embedding(vocab_size, cfg.emb_dim, padding_idx=PAD_ID)
        self.input_dropout = nn.Dropout(cfg.input_dropout)
        self.encoder = rnn_class(
            cfg.emb_dim, h, layers, batch_first=True, dropout=between_layers, bidirectional=cfg.bidirectional_encoder
        )
        self.bridge = nn.Linear(memory_dim, h)  # final states of both directions -> x̃0 and the decoder's start
        self.cell_bridge = nn.Linear(memory_dim, h) if cfg.rnn_type == "lstm" else None
        self.emotion_classifier = nn.Linear(h, cfg.num_emotions) if cfg.emotion_classifier else None
        self.decoder = rnn_class(cfg.emb_dim, h, layers, batch_first=True, dropout=between_layers)
        if cfg.attention == "additive":
            self.attention = AdditiveAttention(h, memory_dim, h)
        else:
            self.attention = MultiplicativeAttention(h, memory_dim)
        self.attention_dropout = nn.Dropout(cfg.attention_dropout)
        self.combine = nn.Linear(memory_dim + h, h, bias=False)  # W_c [c_t; h_t]
        self.dropout = nn.Dropout(cfg.dropout)
        self.output = nn.Linear(h, vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.output.weight = self.embedding.weight

    @property
    def word_embedding(self) -> nn.Embedding:
        return self.embedding

    # -- encoder ---------------------------------------------------------------------------
    def encode(self, batch: dict) -> EncodedDialogue:
        ids, pad_mask = batch["context_ids"], batch["context_pad_mask"]
        inputs = self.input_dropout(self.embedding(ids) + self.embedding(batch["context_state"]))
        lengths = (~pad_mask).sum(dim=1).clamp_min(1).cpu()  # packed: padding never reaches a state
        packed = pack_padded_sequence(inputs, lengths, batch_first=True, enforce_sorted=False)
        outputs, final = self.encoder(packed)
        memory, _ = pad_packed_sequence(outputs, batch_first=True, total_length=ids.shape[1])
        final_hidden, final_cell = final if isinstance(final, tuple) else (final, None)
        hidden = torch.tanh(self.bridge(self._by_layer(final_hidden)))
        cell = self.cell_bridge(self._by_layer(final_cell)) if self.cell_bridge is not None else None
        x0 = hidden[:, -1]
        logits = self.emotion_classifier(x0) if self.emotion_classifier is not None else None
        state = Seq2SeqState(memory=memory, memory_pad_mask=pad_mask, hidden=hidden, cell=cell)
        return EncodedDialogue(x0=x0, w0=None, emotion_logits=logits, state=state)

    def _by_layer(self, final: Tensor) -> Tensor:
        """nn.RNN's final states [L * dirs, B, H] -> [B, L, dirs * H] (each layer's directions side by side)."""
        directions = 2 if self.settings.bidirectional_encoder else 1
        layers, batch, h = self.settings.num_layers, final.shape[1], final.shape[2]
        return final.view(layers, directions, batch, h).permute(2, 0, 1, 3).reshape(batch, layers, directions * h)

    # -- decoder ---------------------------------------------------------------------------
    def _start(self, batch_size: int, device: torch.device) -> Tensor:
        """SOS's word vectors [B, emb_dim]: the first decoder input."""
        return self.embedding(torch.full((batch_size,), SOS_ID, dtype=torch.long, device=device))

    def decode_sequence(self, encoded: EncodedDialogue, token_vectors: Tensor) -> Tensor:
        state: Seq2SeqState = encoded.state
        start = self._start(encoded.batch_size, encoded.device).unsqueeze(1)
        initial = self._rnn_state(state.hidden, state.cell)
        outputs, _ = self.decoder(self.input_dropout(torch.cat([start, token_vectors], dim=1)), initial)
        return self._log_probs(outputs, state)

    def new_cache(self, encoded: EncodedDialogue) -> dict[str, Tensor]:
        """The RNN state with the batch on dim 0 ([B, L, H]), so the default reordering fits."""
        state: Seq2SeqState = encoded.state
        cache = {"hidden": state.hidden}
        if state.cell is not None:
            cache["cell"] = state.cell
        return cache

    def decode_step(self, encoded: EncodedDialogue, cache: dict[str, Tensor], previous: Tensor | None) -> Tensor:
        inputs = self._start(encoded.batch_size, encoded.device) if previous is None else previous
        initial = self._rnn_state(cache["hidden"], cache.get("cell"))
        outputs, final = self.decoder(self.input_dropout(inputs.unsqueeze(1)), initial)
        if isinstance(final, tuple):
            cache["hidden"], cache["cell"] = final[0].transpose(0, 1), final[1].transpose(0, 1)
        else:
            cache["hidden"] = final.transpose(0, 1)
        return self._log_probs(outputs, encoded.state)[:, 0]

    @staticmethod
    def _rnn_state(hidden: Tensor, cell: Tensor | None) -> Tensor | tuple[Tensor, Tensor]:
        """[B, L, H] -> nn.RNN's [L, B, H] (a pair for the LSTM)."""
        hidden = hidden.transpose(0, 1).contiguous()
        return hidden if cell is None else (hidden, cell.transpose(0, 1).contiguous())

    def _log_probs(self, outputs: Tensor, state: Seq2SeqState) -> Tensor:
        """Decoder RNN states [B, T, H] -> attention, h̃_t = tanh(W_c [c_t; h_t]) -> log-probs [B, T, V]."""
        context, _ = attend(self.attention, outputs, state.memory, state.memory_pad_mask, self.attention_dropout)
        attentional = self.dropout(torch.tanh(self.combine(torch.cat([context, outputs], dim=-1))))
        return torch.log_softmax(self.output(attentional), dim=-1)

    def decoder_parameters(self) -> list[nn.Parameter]:
        """The decoder RNN, the attention, W_c and the output layer."""
        modules = (self.decoder, self.attention, self.combine, self.output)
        return [p for module in modules for p in module.parameters()]
