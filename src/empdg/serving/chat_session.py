"""The model side of ``python -m empdg.chat``: history, emotion memory, reply selection.

Kept apart from the terminal loop so every piece can be unit-tested. The user plays the ED
*speaker*, the bot the *listener*; each user turn is encoded exactly like a test example.
With ``rerank=N`` the session samples N candidates and ranks them by the critics' scores (when the
checkpoint has critics) plus the generator's length-normalised log-likelihood; degenerate candidates
(empty, echoing the user, repeating themselves) are never chosen, and when nothing else is left an
editorial fallback answers instead.
"""

from __future__ import annotations

import dataclasses
import math
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from empdg.data.conversation import EMOTIONS
from empdg.data.dataset import SequenceLimits, batch_to_device, collate, encode_example
from empdg.data.emotion_words import get_lexicon
from empdg.data.examples import LISTENER, SPEAKER, DialogueExample
from empdg.data.text import SCHEMES, normalize
from empdg.data.text_metrics import has_repeated_ngram
from empdg.errors import is_number, is_whole, whole_problems
from empdg.models.decoding import DecodingConfig, decode, ids_to_text, sequence_log_probs
from empdg.models.inference import InferenceBundle

_PUNCTUATION = set(string.punctuation) | {"``", "''", "..."}


# -- degenerate replies ----------------------------------------------------------------------
def degenerate_reason(
    reply: Sequence[str], user: Sequence[str], previous: Sequence[str] | None = None, echo_share: float = 0.8
) -> str | None:
    """Why ``reply`` (tokens) is unusable after the user's ``user`` tokens, or None when it is fine.

    * empty: nothing but punctuation;
    * repeats itself: a repeated 3-gram, one word three times in a row, or the bot's ``previous`` reply;
    * repeats the user's words: at least ``echo_share`` of its (>= 2) content words were just said
      by the user -- parroting reads as not listening.
    """
    content = [t for t in reply if t not in _PUNCTUATION]
    if not content:
        return "empty"
    if has_repeated_ngram(list(reply), 3) or any(a == b == c for a, b, c in zip(reply, reply[1:], reply[2:])):
        return "repeats itself"
    if previous is not None and [t.lower() for t in reply] == [t.lower() for t in previous]:
        return "repeats itself"
    said = {t.lower() for t in user}
    if len(content) >= 2 and sum(t.lower() in said for t in content) / len(content) >= echo_share:
        return "repeats the user's words"
    return None


# -- emotion memory ----------------------------------------------------------------------------
class EmotionMemory:
    """Running distribution over the user's emotion: m <- decay * m + (1 - decay) * p per turn.

    The first turn sets m = p. Older turns fade geometrically, so the memory follows a change of mood
    within a few turns while one odd prediction does not overturn it.
    """

    def __init__(self, labels: Sequence[str] = EMOTIONS, *, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"chat.emotion_decay must be in [0, 1), got {decay}")
        self.labels = list(labels)
        self.decay = decay
        self.distribution: list[float] | None = None
        self.turns = 0

    def update(self, probs: Sequence[float]) -> None:
        if len(probs) != len(self.labels):
            raise ValueError(f"expected {len(self.labels)} probabilities, got {len(probs)}")
        if self.distribution is None:
            self.distribution = [float(p) for p in probs]
        else:
            self.distribution = [self.decay * m + (1 - self.decay) * float(p) for m, p in zip(self.distribution, probs)]
        self.turns += 1

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        if self.distribution is None:
            return []
        order = sorted(range(len(self.labels)), key=lambda i: -self.distribution[i])
        return [(self.labels[i], self.distribution[i]) for i in order[:k]]

    def reset(self) -> None:
        self.distribution, self.turns = None, 0


def top_emotions(probs: Sequence[float], k: int = 3) -> list[tuple[str, float]]:
    order = sorted(range(len(probs)), key=lambda i: -probs[i])
    return [(EMOTIONS[i], float(probs[i])) for i in order[:k]]


# -- the session -------------------------------------------------------------------------------
#: the chat settings a checkpoint's run records in its data config (``chat.KEY: null`` takes them from there)
RUN_DATA_KEYS = ("max_context_len", "max_emotion_words", "normalization")


@dataclass
class ChatSettings:
    """The ``chat.*`` settings of one session; their defaults live in one place, ``conf/chat.yaml``."""

    max_context_len: int
    max_emotion_words: int
    normalization: str
    rerank: int
    weights: Mapping[str, float]
    emotion_decay: float
    fallback: str
    seed: int

    @classmethod
    def from_config(
        cls, chat: Mapping[str, Any], run_data: Mapping[str, Any] | None, data: Mapping[str, Any]
    ) -> ChatSettings:
        """``chat.*`` with each unset context setting taken from the checkpoint's ``run_data`` config, else ``data``.

        ``run_data`` is the ``data`` section of the run that trained the checkpoint (None when unknown);
        ``data`` is the command's own data group, used only for what neither sets.
        """
        values = {name: chat.get(name) for name in (f.name for f in dataclasses.fields(cls))}
        for key in RUN_DATA_KEYS:
            if values[key] is None:
                values[key] = (run_data or {}).get(key, data.get(key))
        weights = dict(values["weights"] or {})
        bad = [f"chat.weights.{k}={v!r} must be a number" for k, v in weights.items() if not is_number(v)]
        if bad:
            raise ValueError("; ".join(bad))
        values["weights"] = {str(k): float(v) for k, v in weights.items()}
        missing = [name for name, value in values.items() if value is None]
        if missing:
            raise ValueError(f"chat.{missing[0]} is not set (null) and the checkpoint's run does not record it")
        return cls(**values)

    def __post_init__(self) -> None:
        """Every impossible setting named in one ValueError (the chat's one ``error:`` line), before a session
        starts; a request's own values are checked where the server reads them (``pyfunc_model``)."""
        limits = (("max_context_len", 2), ("max_emotion_words", 2), ("rerank", 0))
        found = [p for key, low in limits for p in whole_problems(f"chat.{key}", getattr(self, key), low)]
        if self.normalization not in SCHEMES:
            found.append(f"chat.normalization={self.normalization!r}: choose one of {', '.join(SCHEMES)}")
        if not is_whole(self.seed):
            found.append(f"chat.seed={self.seed!r} must be a whole number")
        if found:
            raise ValueError("; ".join(found))


@dataclass
class Candidate:
    text: str
    tokens: list[str]
    scores: dict[str, float]
    total: float = float("-inf")
    problem: str | None = None


@dataclass
class Turn:
    reply: str
    emotions: list[tuple[str, float]]
    candidates: list[Candidate]
    fallback_reason: str | None = None
    notes: list[str] = field(default_factory=list)


class ChatSession:
    def __init__(self, bundle: InferenceBundle, decoding: DecodingConfig, settings: ChatSettings) -> None:
        self.bundle = bundle.eval()
        self.generator = bundle.generator
        self.decoding = decoding
        self.settings = settings
        sizes = self.generator.sizes
        max_context = min(settings.max_context_len, sizes.max_positions or settings.max_context_len)
        self.limits = SequenceLimits(max(2, max_context), 64, max(2, settings.max_emotion_words))
        self.memory = EmotionMemory(EMOTIONS[: sizes.num_emotions], decay=settings.emotion_decay)
        self.random = torch.Generator().manual_seed(int(settings.seed))
        self.lexicon = get_lexicon()
        self.history: list[list[str]] = []
        self.roles: list[int] = []
        self.notice: str | None = None  # said once at chat start: what the model was trained on

    @property
    def has_emotions(self) -> bool:
        return self.generator.sizes.has_emotion_classifier

    def reset(self) -> None:
        self.history, self.roles = [], []
        self.memory.reset()

    def tokenize(self, text: str) -> list[str]:
        return normalize(text, self.settings.normalization)

    def _trim_history(self) -> None:
        """Drop whole old turns while the context is over budget ([CLS] takes one position)."""
        budget = self.limits.max_context_len - 1
        while len(self.history) > 1 and sum(map(len, self.history)) > budget:
            self.history.pop(0)
            self.roles.pop(0)

    def _batch(self, copies: int) -> dict:
        words = [w for utterance in self.history for w in self.lexicon.emotion_words(utterance)]
        example = DialogueExample(
            example_id="chat",
            emotion=0,
            situation=[],
            context=self.history,
            context_roles=self.roles,
            target=[],
            feedback=None,
            context_emotion_words=words,
            target_emotion_mask=[],
            feedback_emotion_words=[],
        )
        encoded = encode_example(example, self.bundle.vocab, self.limits)
        batch = collate([encoded] * copies)
        # a chat has no gold emotion: without the placeholder label a model that reads it (MoEL with
        # model.oracle=true) stops with a message instead of quietly using emotion 0
        del batch["emotion_label"]
        return batch_to_device(batch, self.device)

    @property
    def device(self) -> torch.device:
        """Where the model is: the session builds its batches and draws its samples there."""
        return next(self.generator.parameters()).device

    def _sampler(self) -> torch.Generator:
        """``self.random`` on the model's device (sampling on CUDA needs a CUDA generator), same seed."""
        device = self.device
        if self.random.device != device:
            self.random = torch.Generator(device=device).manual_seed(self.random.initial_seed())
        return self.random

    @torch.no_grad()
    def respond(self, text: str) -> Turn:
        """Add the user's turn, answer it, and remember both (the fallback included)."""
        user = self.tokenize(text)
        if not user:
            user = ["..."]
        self.history.append(user)
        self.roles.append(SPEAKER)
        self._trim_history()
        rerank = self.settings.rerank
        batch = self._batch(max(1, rerank))
        encoded = self.generator.encode(batch)
        emotions: list[tuple[str, float]] = []
        if encoded.emotion_logits is not None:
            probs = encoded.emotion_logits[0].softmax(dim=-1).tolist()
            self.memory.update(probs)
            emotions = top_emotions(probs)
        cfg = self.decoding
        if rerank and cfg.strategy != "sample":
            cfg = dataclasses.replace(cfg, strategy="sample")
        ids = decode(self.generator, batch, cfg, generator=self._sampler())
        previous = next((u for u, r in zip(reversed(self.history), reversed(self.roles)) if r == LISTENER), None)
        candidates, notes = self._score(batch, ids, encoded, user, previous)
        usable = [c for c in candidates if c.problem is None]
        if usable:
            best = max(usable, key=lambda c: c.total)
            reply, reason = best.text, None
        else:
            reply = self.settings.fallback
            reason = "; ".join(sorted({c.problem for c in candidates if c.problem}))
        self.history.append(self.tokenize(reply) or ["..."])
        self.roles.append(LISTENER)
        self._trim_history()
        return Turn(reply, emotions, candidates, reason, notes)

    def _score(
        self, batch: dict, ids: Tensor, encoded, user: list[str], previous: list[str] | None
    ) -> tuple[list[Candidate], list[str]]:
        """Total = weighted sum of per-candidate z-scored components (so the weights are comparable)."""
        texts = [ids_to_text(row, self.bundle.vocab, batch["oovs"][0]) for row in ids.tolist()]
        log_prob, lengths = sequence_log_probs(self.generator, batch, ids)
        components = {"likelihood": (log_prob / lengths.clamp_min(1)).tolist()}
        notes: list[str] = []
        components.update(self._critic_scores(batch, ids, encoded, notes))
        candidates = []
        for i, text in enumerate(texts):
            tokens = text.split()
            scores = {name: values[i] for name, values in components.items()}
            candidates.append(Candidate(text, tokens, scores, problem=degenerate_reason(tokens, user, previous)))
        standard = {name: _zscores(values) for name, values in components.items()}
        weights = self.settings.weights
        for i, candidate in enumerate(candidates):
            candidate.total = sum(float(weights.get(name, 0.0)) * z[i] for name, z in standard.items())
        return candidates, notes

    def _critic_scores(self, batch: dict, ids: Tensor, encoded, notes: list[str]) -> dict[str, list[float]]:
        """Scores of the checkpoint's critics, if it has any (trained adversarially); else nothing.

        They read the replies through the critics' one input path (:class:`~empdg.models.critic_panel.CriticPanel`,
        as in training); in chat there is no next user utterance yet, so critics that read feedback get an empty
        one (d_F = 0), and the context is the dialogue so far.
        """
        panel = self.bundle.critics
        if not panel:
            return {}
        try:
            scores = panel.score_replies(batch, encoded, ids)
        except Exception as error:  # an incompatible critic must not break the chat
            notes.append(f"critic scores not used: {type(error).__name__}: {error}")
            return {}
        return {name: [float(s) for s in score.reshape(-1).tolist()] for name, score in scores.items()}


def _zscores(values: Sequence[float]) -> list[float]:
    finite = [v for v in values if math.isfinite(v)]
    if len(finite) < 2:
        return [0.0 if math.isfinite(v) else -1e9 for v in values]
    mean = sum(finite) / len(finite)
    std = math.sqrt(sum((v - mean) ** 2 for v in finite) / len(finite))
    return [((v - mean) / std if std > 0 else 0.0) if math.isfinite(v) else -1e9 for v in values]
