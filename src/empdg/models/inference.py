"""What answering needs of a trained model: the generator, its vocabulary, its settings and, optionally, critics.

Evaluation, the chat and the served model read a checkpoint as this bundle; training builds its generator and
vocabulary through it too (:class:`~empdg.training.module.EmpDGModule` keeps the bundle's generator as its own
``generator`` attribute, so checkpoints keep their ``generator.*`` / ``critics.*`` keys). Nothing here builds an
optimizer, the adversarial game, the phase table, the resume state or validation metrics.

The bundle is a plain object, not an ``nn.Module``: a module that holds it must not see its parts twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from empdg.data.emotion_words import get_lexicon
from empdg.data.vocab import Vocab, vocab_from_spec
from empdg.models.base import Generator
from empdg.models.critic_inputs import match_vocab_weights
from empdg.models.critic_panel import CriticPanel
from empdg.models.registry import build_generator

#: the state_dict prefixes of a training checkpoint the bundle's parts load from
GENERATOR_PREFIX = "generator."
CRITICS_PREFIX = "critics."


@dataclass
class InferenceBundle:
    """A generator with its vocabulary and settings, and optional critics with the one way they read a reply
    (``None``: not loaded, or the run trained none)."""

    generator: Generator
    vocab: Vocab
    #: the ``model`` settings it was built from, as a checkpoint stores them (typed: ``generator.settings``)
    model: dict[str, Any]
    critics: CriticPanel | None = None

    @classmethod
    def build(
        cls, model: Mapping[str, Any], vocab_tokens: list[str], vocab_spec: Mapping[str, Any] | None = None
    ) -> InferenceBundle:
        """A freshly initialised generator for ``model`` over the vocabulary ``vocab_tokens`` / ``vocab_spec``
        describe (a pretrained model's tokenizer when ``vocab_spec`` stores one); no critics."""
        vocab = vocab_from_spec(dict(vocab_spec) if vocab_spec else None, list(vocab_tokens))
        return cls(build_generator(model, vocab_size=len(vocab)), vocab, dict(model))

    def parts(self) -> dict[str, nn.Module]:
        """The bundle's weighted parts by state_dict prefix (critics only when it has them)."""
        found: dict[str, nn.Module] = {GENERATOR_PREFIX: self.generator}
        if self.critics:
            found[CRITICS_PREFIX] = self.critics.critics
        return found

    def load_state_dict(self, state_dict: Mapping[str, Tensor]) -> None:
        """Load each part from a training checkpoint's ``state_dict`` (its ``generator.*``, ``critics.*`` keys),
        strictly: a part's missing, unexpected or mis-shaped weight is a ValueError naming the first such key.
        Keys of parts the bundle does not hold (critics not loaded) are left alone."""
        for prefix, part in self.parts().items():
            weights = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
            try:
                part.load_state_dict(weights)
            except RuntimeError as error:  # torch lists every problem, one per line, after a header
                problems = [line.strip() for line in str(error).splitlines()[1:] if line.strip()]
                first = (problems[0] if problems else str(error)).rstrip(".")
                raise ValueError(
                    f"its weights do not fit the model its hyper-parameters describe ({prefix}*: {first[:300]})"
                ) from None

    def to(self, device: str | torch.device) -> InferenceBundle:
        """Every weighted part on ``device`` (the critics' vocabulary weights follow the generator by themselves)."""
        for part in self.parts().values():
            part.to(device)
        return self

    def eval(self) -> InferenceBundle:
        for part in self.parts().values():
            part.eval()
        return self


def inference_device(choice: str = "auto", key: str = "evaluate.device") -> torch.device:
    """Where a loaded model decodes: ``auto`` the GPU when torch sees one, else the CPU; or the device named
    (``cpu``, ``cuda``, ``cuda:1``). A CUDA device on a machine without one is a ValueError naming ``key``."""
    choice = str(choice or "auto").strip().lower()
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(choice)
    except RuntimeError:
        raise ValueError(f"{key}={choice} is not a device: use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"{key}={choice}: use auto, cpu, cuda or cuda:N")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            raise ValueError(f"{key}={choice} but torch sees {count} CUDA device(s): use {key}=auto or {key}=cpu")
    return device


#: word_match: a reply word counts log(1 + frequency rank)**2 (rare words more; docs/critics.md: power 2 matched best)
MATCH_IDF_POWER = 2.0


def critic_vocab_weights(
    vocab: Vocab, word_match: bool, idf_power: float = MATCH_IDF_POWER
) -> tuple[Tensor, Tensor | None]:
    """What critics read of each vocabulary entry: the [V] emotion-word indicator (the lexicon's words 1, others
    0) and, for ``word_match`` critics, the [V] word-match weights (None without them)."""
    emotion_vocab = torch.zeros(len(vocab))
    emotion_vocab[vocab.emotion_token_ids(get_lexicon().is_emotion_word)] = 1.0
    if not word_match:
        return emotion_vocab, None
    # a word vocabulary is sorted by training frequency: an entry's rank gives its rarity
    return emotion_vocab, match_vocab_weights(list(vocab.tokens), vocab.unit == "word", idf_power)
