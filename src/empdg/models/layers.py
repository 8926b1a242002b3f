"""Transformer building blocks with an optional key/value cache for incremental decoding.

Pre-layer-norm blocks, as in MoEL/EmpDG. Attention takes ``key_pad_mask`` (True at padding) and
``causal``; with a ``cache`` dict a decoder can feed one new position at a time while earlier
keys and values are reused instead of being recomputed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from empdg.models.settings import GeneratorSettings


def sinusoidal_positions(length: int, dim: int) -> Tensor:
    """Fixed sine/cosine timing signal [length, dim] (no parameters, any length)."""
    position = torch.arange(length, dtype=torch.float).unsqueeze(1)
    half = dim // 2
    inv_freq = torch.exp(-math.log(10_000.0) * torch.arange(half, dtype=torch.float) / max(half - 1, 1))
    angles = position * inv_freq.unsqueeze(0)
    signal = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    return F.pad(signal, (0, dim % 2))


class MultiHeadAttention(nn.Module):
    def __init__(self, dim: int, attn_dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = attn_dim // num_heads
        self.query = nn.Linear(dim, attn_dim, bias=False)
        self.key = nn.Linear(dim, attn_dim, bias=False)
        self.value = nn.Linear(dim, attn_dim, bias=False)
        self.out = nn.Linear(attn_dim, dim, bias=False)
        self.dropout = dropout

    def _split(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(
        self,
        query: Tensor,
        memory: Tensor,
        key_pad_mask: Tensor | None = None,
        causal: bool = False,
        cache: dict[str, Tensor] | None = None,
        static_memory: bool = False,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Return the attended values and, if asked, the head-averaged weights [B, Tq, Tk].

        With ``cache``: for self-attention the new keys/values are appended to the cached ones;
        for cross-attention (``static_memory``) they are computed once and reused.
        """
        q = self._split(self.query(query))
        if cache is not None and static_memory and "k" in cache:
            k, v = cache["k"], cache["v"]
        else:
            k, v = self._split(self.key(memory)), self._split(self.value(memory))
            if cache is not None:
                if not static_memory and "k" in cache:
                    k = torch.cat([cache["k"], k], dim=2)
                    v = torch.cat([cache["v"], v], dim=2)
                cache["k"], cache["v"] = k, v
        allowed = self._allowed(q.shape[2], k.shape[2], key_pad_mask, causal, q.device)
        dropout = self.dropout if self.training else 0.0
        if need_weights:
            scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)
            if allowed is not None:
                scores = scores.masked_fill(~allowed, float("-inf"))
            weights = torch.softmax(scores, dim=-1)
            attended = F.dropout(weights, dropout, self.training) @ v
            mean_weights = weights.mean(dim=1)
        else:
            attended = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=dropout)
            mean_weights = None
        b, h, t, d = attended.shape
        return self.out(attended.transpose(1, 2).reshape(b, t, h * d)), mean_weights

    @staticmethod
    def _allowed(
        t_q: int, t_k: int, key_pad_mask: Tensor | None, causal: bool, device: torch.device
    ) -> Tensor | None:
        """Boolean [B|1, 1, Tq, Tk] mask of what each query may see (True = may attend)."""
        allowed = None
        if key_pad_mask is not None:
            allowed = (~key_pad_mask)[:, None, None, :]
        if causal:
            # query i sits at absolute position (t_k - t_q + i): it sees keys up to there
            offset = t_k - t_q
            future = torch.ones(t_q, t_k, dtype=torch.bool, device=device).triu(1 + offset)
            allowed = ~future if allowed is None else allowed & ~future
        return allowed


@dataclass(frozen=True)
class StackSizes:
    """Sizes shared by every block of one transformer stack."""

    dim: int
    attn_dim: int
    heads: int
    ff_dim: int
    layers: int
    dropout: float
    attn_dropout: float

    @classmethod
    def from_settings(cls, settings: GeneratorSettings) -> StackSizes:
        """The stack a generator's shared sizes describe (``model.hidden_dim``, ``model.num_heads`` ...)."""
        return cls(
            settings.hidden_dim,
            settings.attn_dim,
            settings.num_heads,
            settings.ff_dim,
            settings.num_layers,
            settings.dropout,
            settings.attention_dropout,
        )


class FeedForward(nn.Sequential):
    def __init__(self, dim: int, ff_dim: int, dropout: float) -> None:
        super().__init__(nn.Linear(dim, ff_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ff_dim, dim))


class EncoderLayer(nn.Module):
    def __init__(self, sizes: StackSizes):
        super().__init__()
        self.norm_attn = nn.LayerNorm(sizes.dim)
        self.attn = MultiHeadAttention(sizes.dim, sizes.attn_dim, sizes.heads, sizes.attn_dropout)
        self.norm_ff = nn.LayerNorm(sizes.dim)
        self.ff = FeedForward(sizes.dim, sizes.ff_dim, sizes.dropout)
        self.drop = nn.Dropout(sizes.dropout)

    def forward(self, x: Tensor, pad_mask: Tensor) -> Tensor:
        h = self.norm_attn(x)
        x = x + self.drop(self.attn(h, h, key_pad_mask=pad_mask)[0])
        return x + self.drop(self.ff(self.norm_ff(x)))


class TransformerEncoder(nn.Module):
    def __init__(self, sizes: StackSizes):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(sizes) for _ in range(sizes.layers))
        self.norm = nn.LayerNorm(sizes.dim)

    def forward(self, x: Tensor, pad_mask: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x, pad_mask)
        return self.norm(x)


class DecoderLayer(nn.Module):
    def __init__(self, sizes: StackSizes):
        super().__init__()
        self.norm_self = nn.LayerNorm(sizes.dim)
        self.self_attn = MultiHeadAttention(sizes.dim, sizes.attn_dim, sizes.heads, sizes.attn_dropout)
        self.norm_cross = nn.LayerNorm(sizes.dim)
        self.cross_attn = MultiHeadAttention(sizes.dim, sizes.attn_dim, sizes.heads, sizes.attn_dropout)
        self.norm_ff = nn.LayerNorm(sizes.dim)
        self.ff = FeedForward(sizes.dim, sizes.ff_dim, sizes.dropout)
        self.drop = nn.Dropout(sizes.dropout)

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        memory_pad_mask: Tensor,
        cache: dict[str, dict[str, Tensor]] | None = None,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        self_cache = cross_cache = None
        if cache is not None:
            self_cache = cache.setdefault("self", {})
            cross_cache = cache.setdefault("cross", {})
        h = self.norm_self(x)
        x = x + self.drop(self.self_attn(h, h, causal=True, cache=self_cache)[0])
        attended, weights = self.cross_attn(
            self.norm_cross(x),
            memory,
            memory_pad_mask,
            cache=cross_cache,
            static_memory=True,
            need_weights=need_weights,
        )
        x = x + self.drop(attended)
        return x + self.drop(self.ff(self.norm_ff(x))), weights


class TransformerDecoder(nn.Module):
    def __init__(self, sizes: StackSizes):
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(sizes) for _ in range(sizes.layers))
        self.norm = nn.LayerNorm(sizes.dim)

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        memory_pad_mask: Tensor,
        cache: list[dict] | None = None,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Return normalised states and the last layer's cross-attention weights (for copying)."""
        weights = None
        for i, layer in enumerate(self.layers):
            last = i == len(self.layers) - 1
            x, w = layer(
                x, memory, memory_pad_mask, None if cache is None else cache[i], need_weights and last
            )
            weights = w if last else weights
        return self.norm(x), weights


def masked_mean(states: Tensor, valid: Tensor) -> Tensor:
    """Mean of ``states`` [B, S, d] over the positions where ``valid`` [B, S] is true (zeros for none)."""
    weights = valid.unsqueeze(-1).to(states.dtype)
    return (states * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)
