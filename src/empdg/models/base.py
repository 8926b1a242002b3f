"""The generator seam: what training, the critics, decoding, evaluation and chat may ask of a generator.

Everything outside a model's own file talks to it through :class:`Generator` only, so a new model is
one file that subclasses it (plus its YAML and tests; see docs/adding_a_model.md). The decoder's
state -- memory, masks, the key/value cache -- stays opaque behind ``EncodedDialogue.state`` and the
cache object, so decoding never depends on one model's layout.

Conventions: batches are the dicts of :func:`empdg.data.dataset.collate`; log-probabilities span the
vocabulary, extended by the batch's out-of-vocabulary context words when the generator copies
(``sizes.copy``); "word vectors" are rows of :attr:`Generator.word_embedding` (``emb_dim``), the
form the critics read and decoding feeds back.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from empdg.data.vocab import SPECIAL_TOKENS, UNK_ID
from empdg.models.settings import GeneratorSettings

#: the log-probability of an id a generator can never produce (finite: 0 * it stays 0 in entropies)
IMPOSSIBLE_LOG_PROB = -1.0e9


@dataclass(frozen=True)
class GeneratorSizes:
    """The sizes and capabilities callers need, whatever the generator's architecture.

    ``x0`` and ``w0`` are ``hidden_dim`` wide (the critics' condition), word vectors ``emb_dim``;
    ``max_positions`` is None when the generator has no length limit.
    """

    vocab_size: int
    num_emotions: int
    emb_dim: int
    hidden_dim: int
    max_positions: int | None
    has_emotion_classifier: bool
    copy: bool

    @classmethod
    def from_settings(
        cls,
        settings: GeneratorSettings,
        vocab_size: int,
        *,
        has_emotion_classifier: bool,
        positional: bool = True,
        copy: bool = False,
    ) -> GeneratorSizes:
        """The sizes of a generator built from ``settings``; ``positional=False``: no length limit."""
        return cls(
            vocab_size=vocab_size,
            num_emotions=settings.num_emotions,
            emb_dim=settings.emb_dim,
            hidden_dim=settings.hidden_dim,
            max_positions=settings.max_positions if positional else None,
            has_emotion_classifier=has_emotion_classifier,
            copy=copy,
        )

    def __post_init__(self) -> None:
        if self.vocab_size <= len(SPECIAL_TOKENS):
            raise ValueError(
                f"the vocabulary has {self.vocab_size} entries (only special tokens); "
                "lower data.vocab.min_count or check the data"
            )


@dataclass
class EncodedDialogue:
    """What the encoders made of a batch: the summaries callers read, and the decoder's opaque state."""

    x0: Tensor  # [B, hidden] the dialogue summary x̃0 (the semantic critic's condition)
    w0: Tensor | None  # [B, hidden] the emotion encoder's summary w̃0, when there is one
    emotion_logits: Tensor | None  # [B, num_emotions] when the generator has an emotion classifier
    state: Any  # whatever this generator's decoder needs; only the generator reads it

    @property
    def batch_size(self) -> int:
        return self.x0.shape[0]

    @property
    def device(self) -> torch.device:
        return self.x0.device


@dataclass
class GeneratorOutput:
    """A teacher-forced pass: log-probs [B, T, V'] of every target token, and the encoding."""

    log_probs: Tensor | None
    encoded: EncodedDialogue


def map_tensors(value: Any, fn: Callable[[Tensor], Tensor]) -> Any:
    """Apply ``fn`` to every tensor inside dataclasses, dicts, lists and tuples; other values stay."""
    if isinstance(value, Tensor):
        return fn(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {f.name: map_tensors(getattr(value, f.name), fn) for f in dataclasses.fields(value) if f.init}
        return dataclasses.replace(value, **changes)
    if isinstance(value, dict):
        return {key: map_tensors(item, fn) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(map_tensors(item, fn) for item in value)
    return value


class Generator(nn.Module, ABC):
    """Base class of every response generator (a plain ``nn.Module``, sizes passed explicitly).

    A subclass names its settings dataclass in ``settings_class``, is built as
    ``cls(settings, vocab_size)`` and registers with :func:`empdg.models.registry.register_generator`.
    It implements :meth:`encode`, :meth:`decode_sequence`, :meth:`new_cache`, :meth:`decode_step`,
    :attr:`word_embedding` and :meth:`decoder_parameters`; the rest has working defaults.
    """

    settings_class: ClassVar[type[GeneratorSettings]]

    def __init__(self, settings: GeneratorSettings, sizes: GeneratorSizes) -> None:
        super().__init__()
        self.settings = settings
        self.sizes = sizes

    # -- what a subclass implements ------------------------------------------------------------
    @abstractmethod
    def encode(self, batch: dict) -> EncodedDialogue:
        """Encode the dialogue context of ``batch``."""

    @abstractmethod
    def decode_sequence(self, encoded: EncodedDialogue, token_vectors: Tensor) -> Tensor:
        """Teacher-forced decoder over T previous-token word vectors [B, T, emb_dim].

        Returns log-probs [B, T + 1, V'] of the tokens at positions 0..T: position 0 is predicted from
        the generator's own start (SOS, an emotion signal, ...), position t from it and tokens < t.
        Relaxed (soft) word vectors are allowed: the result is differentiable in them.
        """

    @abstractmethod
    def new_cache(self, encoded: EncodedDialogue) -> Any:
        """An empty incremental-decoding cache for ``encoded`` (its layout is the generator's business)."""

    @abstractmethod
    def decode_step(self, encoded: EncodedDialogue, cache: Any, previous: Tensor | None) -> Tensor:
        """Feed one position and return log-probs [B, V'] of the next token; updates ``cache`` in place.

        ``previous`` holds the word vectors [B, emb_dim] of the token chosen at the last step, None at
        the first step. The tokens must equal those of :meth:`decode_sequence` on the same prefix.
        """

    @property
    @abstractmethod
    def word_embedding(self) -> nn.Embedding:
        """The word vectors (``vocab_size`` x ``emb_dim``) the critics read and pretrained vectors fill."""

    @abstractmethod
    def decoder_parameters(self) -> list[nn.Parameter]:
        """The decoder side, where the adversarial and the MLE gradients are compared."""

    # -- defaults ------------------------------------------------------------------------------
    def embed_tokens(self, ids: Tensor) -> Tensor:
        """Word vectors of ``ids``; extended (copied) ids beyond the vocabulary read as UNK."""
        return self.word_embedding(ids.masked_fill(ids >= self.sizes.vocab_size, UNK_ID))

    def forward(self, batch: dict) -> GeneratorOutput:
        """Teacher-forced pass predicting every target token (ending with EOS)."""
        encoded = self.encode(batch)
        log_probs = self.decode_sequence(encoded, self.embed_tokens(batch["target_ids"][:, :-1]))
        return GeneratorOutput(log_probs=log_probs, encoded=encoded)

    def repeat_encoded(self, encoded: EncodedDialogue, times: int) -> EncodedDialogue:
        """Each example ``times`` times in a row (beam b of example i at row i*times+b).

        The default repeats every tensor along dim 0; override when the state is laid out otherwise.
        """
        if times == 1:
            return encoded
        return map_tensors(encoded, lambda t: t.repeat_interleave(times, dim=0))

    def reorder_cache(self, cache: Any, index: Tensor) -> Any:
        """The cache with its rows selected by ``index`` (beams re-ranked); returns the new cache.

        The default selects dim 0 of every tensor in it; override when the batch is elsewhere.
        """
        return map_tensors(cache, lambda t: t.index_select(0, index))
