"""Sizes and switches of the generator, built from the Hydra ``model`` group."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

EMOTION_INJECTIONS = ("none", "projection", "label_embedding")


@dataclass
class GeneratorConfig:
    """Every size a layer needs; the defaults are EmpDG's paper configuration (MoEL's code sizes).

    ``emotion_injection`` selects how the predicted emotion reaches the decoder's first input:
    ``projection`` is EmpDG's W_ep e_p (differentiable), ``label_embedding`` is EmoPrepend's
    embedding of the arg-max label, ``none`` is a plain Transformer (SOS starts decoding).
    """

    vocab_size: int
    num_emotions: int = 32
    emb_dim: int = 300
    hidden_dim: int = 300
    num_layers: int = 1
    num_heads: int = 2
    attn_dim: int = 40
    ff_dim: int = 50
    input_dropout: float = 0.0
    dropout: float = 0.0
    attention_dropout: float = 0.0
    max_positions: int = 1024
    emotion_classifier: bool = True
    emotion_encoder: bool = True
    emotion_injection: str = "projection"
    tie_embeddings: bool = False
    copy: bool = False

    def __post_init__(self) -> None:
        problems = []
        if self.vocab_size <= 8:
            problems.append(
                f"the vocabulary has {self.vocab_size} entries (only special tokens); "
                "lower data.vocab.min_count or check the data"
            )
        if self.hidden_dim % self.num_heads or self.attn_dim % self.num_heads:
            problems.append(
                f"model.hidden_dim={self.hidden_dim} and model.attn_dim={self.attn_dim} "
                f"must be divisible by model.num_heads={self.num_heads}"
            )
        if self.emotion_injection not in EMOTION_INJECTIONS:
            problems.append(
                f"model.emotion_injection={self.emotion_injection!r} must be one of {EMOTION_INJECTIONS}"
            )
        if self.emotion_injection != "none" and not self.emotion_classifier:
            problems.append(
                "model.emotion_injection needs model.emotion_classifier=true (it injects the predicted emotion)"
            )
        if self.emotion_encoder and not self.emotion_classifier:
            problems.append(
                "model.emotion_encoder=true needs model.emotion_classifier=true (the encoder feeds it)"
            )
        if self.tie_embeddings and self.emb_dim != self.hidden_dim:
            problems.append("model.tie_embeddings=true needs model.emb_dim == model.hidden_dim")
        if problems:
            raise ValueError("invalid model configuration: " + "; ".join(problems))

    @classmethod
    def from_mapping(cls, values: dict[str, Any], vocab_size: int) -> GeneratorConfig:
        """Pick the generator's keys out of the ``model`` config (which also holds other settings)."""
        names = {f.name for f in fields(cls)} - {"vocab_size"}
        return cls(vocab_size=vocab_size, **{k: values[k] for k in names if k in values})
