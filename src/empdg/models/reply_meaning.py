"""Metrics that read meaning: sentence similarity of a reply, and the emotion a reply conveys.

Per example (:func:`meaning_scores`), with the packaged MiniLM sentence encoder:

- ``sim_reference``: cosine of the reply and the gold reply (how close in meaning, whatever the words);
- ``sim_context``: cosine of the reply and the last speaker utterance (does it answer what was said);
- ``reply_emotion`` / ``reference_emotion``: the emotion a :class:`ReplyEmotionClassifier` reads in the
  reply and in the gold reply.

The classifier is a softmax regression on MiniLM embeddings of the *training split's listener replies*,
each labelled with its conversation's emotion (ED labels the situation, not the reply, so even gold
replies are classified far from perfectly: its accuracy on the gold test replies is reported beside the
generated replies' as their ceiling). Full-batch L-BFGS in float64 from zeros: the same data gives the same
weights. It is cached as JSON (never pickle) under a key of the encoder's digest, the training replies and
labels and the settings, so new data means a new classifier; a cache file that is not a valid classifier
is rebuilt.

What these do not measure: whether a reply is empathetic, appropriate, safe or true; a generic reply
("i am sorry to hear that") can be close to many references and to a sad context alike.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from empdg.data.conversation import EMOTIONS
from empdg.data.corpus_metrics import METRICS, CorpusStatistics, ScoredExample
from empdg.data.examples import DialogueExample
from empdg.models.sentence_encoder import SentenceEncoder, encoder_fingerprint

log = logging.getLogger(__name__)

CLASSIFIER_FORMAT = 1
L2 = 1e-3  # per-example-averaged loss + L2 * |W|^2: mild, the 384 features are already normalised
MAX_ITER = 200

#: the per-example fields :func:`meaning_scores` adds to a prediction record
SCORE_KEYS = ("sim_reference", "sim_context", "reply_emotion", "reference_emotion")
#: the registered metrics (:mod:`empdg.data.corpus_metrics`) :func:`meaning_metrics` reports
MEANING_METRICS = ("sim_reference", "sim_context", "reply_emotion_acc")


@dataclass(frozen=True)
class ReplyEmotionClassifier:
    """Softmax regression ``labels[argmax(x W^T + b)]`` over unit-length sentence embeddings ``x``."""

    labels: tuple[str, ...]
    weight: Tensor  # [C, dim] float64
    bias: Tensor  # [C]
    key: str  # what it was trained from (cache key)

    def predict(self, embeddings: Tensor) -> list[str]:
        if len(embeddings) == 0:
            return []
        logits = embeddings.double() @ self.weight.T + self.bias
        return [self.labels[i] for i in logits.argmax(dim=-1).tolist()]

    def to_json(self) -> str:
        return json.dumps({
            "format": CLASSIFIER_FORMAT, "key": self.key, "labels": list(self.labels),
            "weight": self.weight.tolist(), "bias": self.bias.tolist(),
        })  # fmt: skip

    @classmethod
    def from_json(cls, text: str, key: str, dim: int) -> ReplyEmotionClassifier:
        """Raises ValueError unless ``text`` is a classifier of this format, key and size, all values finite."""
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("format") != CLASSIFIER_FORMAT or data.get("key") != key:
            raise ValueError("not a reply-emotion classifier of this format and key")
        labels = data.get("labels")
        if not isinstance(labels, list) or not labels or not all(isinstance(label, str) for label in labels):
            raise ValueError("labels must be a non-empty list of strings")
        weight = torch.tensor(data.get("weight"), dtype=torch.float64)
        bias = torch.tensor(data.get("bias"), dtype=torch.float64)
        if weight.shape != (len(labels), dim) or bias.shape != (len(labels),):
            raise ValueError(
                f"weight {tuple(weight.shape)} / bias {tuple(bias.shape)} do not fit {len(labels)} x {dim}"
            )
        if not (torch.isfinite(weight).all() and torch.isfinite(bias).all()):
            raise ValueError("non-finite weights")
        return cls(tuple(labels), weight, bias, key)


def classifier_key(replies: Sequence[str], labels: Sequence[str]) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps([CLASSIFIER_FORMAT, encoder_fingerprint(), L2, MAX_ITER]).encode())
    for reply, label in zip(replies, labels):
        digest.update(json.dumps([reply, label]).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def fit_softmax_regression(features: Tensor, targets: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """Weights ``[C, dim]`` and bias ``[C]`` minimising mean cross-entropy + L2 |W|^2 (float64, from zeros)."""
    x = features.double()
    weight = torch.zeros(num_classes, x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=MAX_ITER, tolerance_grad=1e-9, tolerance_change=1e-12,
                                  line_search_fn="strong_wolfe")  # fmt: skip

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ weight.T + bias, targets) + L2 * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weight.detach(), bias.detach()


def reply_emotion_classifier(
    replies: Sequence[str], labels: Sequence[str], encoder: SentenceEncoder, cache_dir: str | Path | None = None
) -> ReplyEmotionClassifier:
    """The classifier trained on ``replies`` (training-split listener replies) and their ``labels``; cached."""
    if len(replies) != len(labels) or not replies:
        raise ValueError(f"need as many labels as replies (got {len(replies)} and {len(labels)}), at least one")
    key = classifier_key(replies, labels)
    path = Path(cache_dir) / f"reply-emotion-{key[:16]}.json" if cache_dir is not None else None
    if path is not None and path.is_file():
        try:
            if path.stat().st_size > 16 << 20:
                raise ValueError("larger than 16 MiB")
            return ReplyEmotionClassifier.from_json(path.read_text(encoding="utf-8"), key, encoder.dim)
        except (ValueError, TypeError, RecursionError, UnicodeDecodeError) as error:
            log.warning("%s is not a valid reply-emotion classifier (%s): rebuilding it", path, error)
    names = tuple(sorted(set(labels)))
    index = {name: i for i, name in enumerate(names)}
    weight, bias = fit_softmax_regression(
        encoder.encode(replies), torch.tensor([index[label] for label in labels]), len(names)
    )
    classifier = ReplyEmotionClassifier(names, weight, bias, key)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".json.partial")
        partial.write_text(classifier.to_json(), encoding="utf-8")
        partial.replace(path)  # atomic: a killed process never leaves half a file under the real name
    return classifier


def training_split_classifier(
    train: Sequence[DialogueExample], encoder: SentenceEncoder, cache_dir: str | Path | None = None
) -> ReplyEmotionClassifier:
    """The classifier of a data set: trained on its training split's listener replies (``train``, the whole
    split, as prepared), each labelled with its conversation's emotion; cached under ``cache_dir``."""
    return reply_emotion_classifier(
        [" ".join(e.target) for e in train], [EMOTIONS[e.emotion] for e in train], encoder, cache_dir
    )


def meaning_scores(
    preds: Sequence[str],
    refs: Sequence[str],
    last_turns: Sequence[str],
    encoder: SentenceEncoder,
    classifier: ReplyEmotionClassifier | None = None,
) -> list[dict[str, float | str]]:
    """Per example: ``sim_reference``, ``sim_context`` (and ``reply_emotion``, ``reference_emotion`` with a
    classifier). Replies, references and last turns are encoded in one pass each."""
    if not len(preds) == len(refs) == len(last_turns):
        raise ValueError(f"got {len(preds)} replies, {len(refs)} references and {len(last_turns)} last turns")
    pred_vectors, ref_vectors = encoder.encode(preds), encoder.encode(refs)
    turn_vectors = encoder.encode(last_turns)
    sim_ref = (pred_vectors * ref_vectors).sum(dim=-1).tolist()
    sim_turn = (pred_vectors * turn_vectors).sum(dim=-1).tolist()
    rows: list[dict[str, float | str]] = [
        {"sim_reference": round(a, 6), "sim_context": round(b, 6)} for a, b in zip(sim_ref, sim_turn)
    ]
    if classifier is not None:
        for row, reply, reference in zip(rows, classifier.predict(pred_vectors), classifier.predict(ref_vectors)):
            row.update(reply_emotion=reply, reference_emotion=reference)
    return rows


def meaning_metrics(rows: Sequence[dict], gold_emotions: Sequence[str]) -> dict[str, float]:
    """Means over examples: ``sim_reference``, ``sim_context``, and with a classifier's fields
    ``reply_emotion_acc`` (replies) and ``reply_emotion_acc_gold`` (gold replies: the ceiling)."""
    examples = [ScoredExample("", emotion=gold, **row) for row, gold in zip(rows, gold_emotions)]
    return CorpusStatistics(examples, {name: METRICS[name] for name in MEANING_METRICS}).point()
