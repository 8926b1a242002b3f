"""One implementation per test-set metric, for validation, evaluation and the bootstrap tables alike.

A metric is a :class:`CorpusMetric` in :data:`METRICS`: ``statistics(examples)`` computes what it needs of
each example once (n-gram sets, token counts, NLL sums, matches), and ``values(statistics, weights)`` gives
its corpus figures on weightings of those examples, a (B, n) matrix of how often each example counts. The
full set is ``weights = ones((1, n))`` (what evaluation and validation report); a bootstrap resample is a row
of draw counts, so the bootstrap resamples exactly the statistics the evaluation aggregates.

Adding a metric is one class and one :func:`register_metric` call: evaluation's ``metrics.json``, the
bootstrap's tables and (for the keys in ``validation_keys``) validation's ``val/greedy_<key>`` then have it.

It lives with the data because training's validation (below the evaluation layer) reads it too.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from empdg.data.emotion_polarity import emotion_polarity
from empdg.data.text_metrics import bleu_from_statistics, bleu_statistics, has_repeated_ngram, ngrams, normalize_reply

__all__ = [
    "METRICS",
    "VADER_THRESHOLD",
    "CorpusMetric",
    "CorpusStatistics",
    "ScoredExample",
    "SummedMetric",
    "compound_scores",
    "metric_keys",
    "register_metric",
    "valence_outcome",
]

#: |compound| below this is neutral (VADER's recommended cut-off; see ``empdg.evaluation.valence``).
VADER_THRESHOLD = 0.05


@dataclass(frozen=True)
class ScoredExample:
    """The fields of one evaluated example that the metrics are computed from (None: not known).

    Validation knows its greedy replies only (``pred``); a prediction file adds ``ref`` and ``emotion``; an
    evaluation of a model the rest.
    """

    pred: str
    ref: str | None = None
    emotion: str | None = None
    predicted_emotion: str | None = None
    nll_sum: float | None = None
    n_tokens: int | None = None
    has_feedback: bool | None = None
    example_id: str | None = None
    # the metrics that read meaning (empdg.models.reply_meaning), when the evaluation computed them
    sim_reference: float | None = None
    sim_context: float | None = None
    reply_emotion: str | None = None
    reference_emotion: str | None = None


class CorpusMetric(ABC):
    """One metric: its per-example statistics and the corpus values aggregated from them.

    Subclasses set ``name``, ``keys`` (the figures it gives, in order), ``fields`` (the :class:`ScoredExample`
    fields it reads: every example must have them), and optionally ``counts`` (keys that are integer counts)
    and ``validation_keys`` (keys validation logs for its greedy replies; those metrics may read ``pred`` only).
    """

    name: str
    keys: tuple[str, ...]
    fields: tuple[str, ...] = ("pred",)
    counts: tuple[str, ...] = ()
    validation_keys: tuple[str, ...] = ()

    def problem(self, examples: Sequence[ScoredExample]) -> str | None:
        """Why these examples cannot be scored: ``""`` when a field is missing (nothing to say), a message when
        their content is unfit, None when they can be scored."""
        return None if all(getattr(e, f) is not None for e in examples for f in self.fields) else ""

    @abstractmethod
    def statistics(self, examples: Sequence[ScoredExample]) -> Any:
        """What the metric needs of each example, computed once."""

    @abstractmethod
    def values(self, statistics: Any, weights: np.ndarray) -> dict[str, np.ndarray]:
        """Corpus values (arrays (B,)) on each row of ``weights`` (B, n), ``statistics`` from :meth:`statistics`."""


class SummedMetric(CorpusMetric):
    """A metric of weighted sums of per-example numbers (counts, NLL, matches): a function of ``w @ rows``."""

    @abstractmethod
    def row(self, example: ScoredExample) -> Sequence[float]:
        """The numbers of one example."""

    @abstractmethod
    def from_sums(self, sums: np.ndarray, size: np.ndarray) -> dict[str, np.ndarray]:
        """Values from the summed rows ``sums`` (B, k) of ``size`` (B,) examples; what a DDP accumulator of
        the rows computes too."""

    def statistics(self, examples: Sequence[ScoredExample]) -> np.ndarray:
        return np.asarray([self.row(e) for e in examples], dtype=float).reshape(len(examples), -1)

    def values(self, statistics: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
        w = weights.astype(float)
        return self.from_sums(w @ statistics, w.sum(axis=1))


class _DistinctCounter:
    """Distinct items (n-grams, replies) among the drawn examples, vectorised over resamples."""

    def __init__(self, item_ids: np.ndarray, owners: np.ndarray) -> None:
        pairs = np.unique(np.stack([item_ids, owners], axis=1), axis=0) if len(item_ids) else np.zeros((0, 2), int)
        self.owners = pairs[:, 1]  # sorted by item id, then owner
        self.starts = np.flatnonzero(np.r_[True, pairs[1:, 0] != pairs[:-1, 0]]) if len(pairs) else np.zeros(0, int)

    @classmethod
    def of(cls, items_per_example: Sequence[Sequence[Any]]) -> _DistinctCounter:
        vocabulary: dict[Any, int] = {}
        ids, owners = [], []
        for i, items in enumerate(items_per_example):
            for item in items:
                ids.append(vocabulary.setdefault(item, len(vocabulary)))
                owners.append(i)
        return cls(np.asarray(ids, np.int64), np.asarray(owners, np.int64))

    def count(self, weights: np.ndarray) -> np.ndarray:
        if len(self.owners) == 0:
            return np.zeros(weights.shape[0])
        drawn = weights[:, self.owners] > 0
        return np.logical_or.reduceat(drawn, self.starts, axis=1).sum(axis=1).astype(float)


def _share(numerator: np.ndarray, size: np.ndarray, scale: float = 1.0) -> np.ndarray:
    return scale * numerator / size


class Perplexity(SummedMetric):
    """``exp(sum nll_sum / sum n_tokens)`` over the examples (unsmoothed, teacher-forced), not a mean of
    per-example perplexities."""

    name, keys, fields = "ppl", ("ppl",), ("nll_sum", "n_tokens")

    def problem(self, examples: Sequence[ScoredExample]) -> str | None:
        missing = super().problem(examples)
        return missing if missing is not None or all(np.isfinite(e.nll_sum) for e in examples) else ""

    def row(self, example: ScoredExample) -> Sequence[float]:
        return example.nll_sum, example.n_tokens

    def from_sums(self, sums: np.ndarray, size: np.ndarray) -> dict[str, np.ndarray]:
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            return {"ppl": np.exp(sums[:, 0] / sums[:, 1])}


class EmotionAccuracy(SummedMetric):
    """Share of examples whose predicted emotion is the gold one (the paper's 'Emotion Accuracy')."""

    name, keys, fields = "emotion_acc", ("emotion_acc",), ("predicted_emotion", "emotion")

    def row(self, example: ScoredExample) -> Sequence[float]:
        return (example.predicted_emotion == example.emotion,)

    def from_sums(self, sums: np.ndarray, size: np.ndarray) -> dict[str, np.ndarray]:
        return {"emotion_acc": _share(sums[:, 0], size)}


class DistinctN(CorpusMetric):
    """Corpus Distinct-n: unique n-grams / all n-grams x 100 (0.0 without n-grams); corpus level, not averaged
    per reply, as EmpDG and MoEL report it."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.name = f"dist_{n}"
        self.keys = self.validation_keys = (self.name,)

    def statistics(self, examples: Sequence[ScoredExample]) -> tuple[_DistinctCounter, np.ndarray]:
        grams = [ngrams(e.pred.split(), self.n) for e in examples]
        return _DistinctCounter.of(grams), np.asarray([len(g) for g in grams], dtype=float)

    def values(self, statistics: tuple[_DistinctCounter, np.ndarray], weights: np.ndarray) -> dict[str, np.ndarray]:
        counter, totals = statistics
        total = weights.astype(float) @ totals
        unique = counter.count(weights)
        return {self.name: np.divide(100.0 * unique, total, out=np.zeros_like(total), where=total > 0)}


class CorpusBLEU(SummedMetric):
    """Corpus BLEU-1..4 (0-100, no smoothing) from summed clipped matches, n-gram totals and lengths."""

    name, keys, fields = "bleu", ("bleu_1", "bleu_2", "bleu_3", "bleu_4"), ("pred", "ref")

    def row(self, example: ScoredExample) -> Sequence[float]:
        matches, totals, hyp_len, ref_len = bleu_statistics(example.pred.split(), example.ref.split(), 4)
        return *matches, *totals, hyp_len, ref_len

    def from_sums(self, sums: np.ndarray, size: np.ndarray) -> dict[str, np.ndarray]:
        scores = [bleu_from_statistics(row[:4], row[4:8], row[8], row[9]) for row in sums]
        return {key: np.asarray([s[key] for s in scores]) for key in self.keys}


class AverageLength(SummedMetric):
    """Mean reply length in whitespace tokens."""

    name = "avg_len"
    keys = ("avg_len",)

    def row(self, example: ScoredExample) -> Sequence[float]:
        return (len(example.pred.split()),)

    def from_sums(self, sums: np.ndarray, size: np.ndarray) -> dict[str, np.ndarray]:
        return {"avg_len": _share(sums[:, 0], size)}


class RepetitionRate(SummedMetric):
    """Percentage (0-100) of replies that repeat some n-gram, a cheap degeneration detector."""

    def __init__(self, n: int = 3) -> None:
        self.n = n
        self.name = f"rep_{n}"
        self.keys = (self.name,)

    def row(self, example: ScoredExample) -> Sequence[float]:
        return (has_repeated_ngram(example.pred.split(), self.n),)

    def from_sums(self, sums: np.ndarray, size: np.ndarray) -> dict[str, np.ndarray]:
        return {self.name: _share(sums[:, 0], size, 100.0)}


class UniqueReplies(CorpusMetric):
    """``unique_replies``: distinct replies after :func:`~empdg.data.text_metrics.normalize_reply` (a collapse
    detector), and ``unique_reply_share``: that count / replies."""

    name, keys, counts = "unique_replies", ("unique_replies", "unique_reply_share"), ("unique_replies",)
    validation_keys = ("unique_replies",)

    def statistics(self, examples: Sequence[ScoredExample]) -> _DistinctCounter:
        return _DistinctCounter.of([(normalize_reply(e.pred),) for e in examples])

    def values(self, statistics: _DistinctCounter, weights: np.ndarray) -> dict[str, np.ndarray]:
        unique = statistics.count(weights)
        return {"unique_replies": unique, "unique_reply_share": _share(unique, weights.sum(axis=1))}


@lru_cache(maxsize=1)
def _analyzer():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def compound_scores(texts: Sequence[str]) -> list[float]:
    """VADER compound score (-1..1) of each text, in order."""
    analyzer = _analyzer()
    return [float(analyzer.polarity_scores(text)["compound"]) for text in texts]


def valence_outcome(compound: float, emotion: str, threshold: float = VADER_THRESHOLD) -> tuple[bool, bool]:
    """(agrees, neutral) of one reply: its compound score against the gold emotion's polarity group."""
    neutral = -threshold < compound < threshold
    if neutral:
        return False, True
    return (compound > 0) == (emotion_polarity(emotion) > 0), False


class ValenceAgreement(SummedMetric):
    """Shares (0..1) of replies whose VADER sentiment has the polarity of the gold emotion
    (``valence_agreement``) and of neutral ones (``valence_neutral_share``); see ``empdg.evaluation.valence``."""

    name, fields = "valence_agreement", ("pred", "emotion")
    keys = ("valence_agreement", "valence_neutral_share")

    def __init__(self, threshold: float = VADER_THRESHOLD) -> None:
        self.threshold = threshold

    def problem(self, examples: Sequence[ScoredExample]) -> str | None:
        missing = super().problem(examples)
        if missing is not None:
            return missing
        try:  # an emotion outside the 32 ED labels has no polarity group
            for emotion in {e.emotion for e in examples}:
                emotion_polarity(emotion)
        except ValueError as error:
            return str(error)
        return None

    def statistics(self, examples: Sequence[ScoredExample]) -> np.ndarray:
        compounds = compound_scores([e.pred for e in examples])  # VADER once per example, in one call
        outcomes = [valence_outcome(c, e.emotion, self.threshold) for c, e in zip(compounds, examples)]
        return np.asarray(outcomes, dtype=float).reshape(len(examples), 2)

    def row(self, example: ScoredExample) -> Sequence[float]:
        return tuple(self.statistics([example])[0])

    def from_sums(self, sums: np.ndarray, size: np.ndarray) -> dict[str, np.ndarray]:
        return {"valence_agreement": _share(sums[:, 0], size), "valence_neutral_share": _share(sums[:, 1], size)}


class StoredMean(SummedMetric):
    """The mean of a number the evaluation stored per example (a similarity that reads meaning)."""

    def __init__(self, field: str) -> None:
        self.name, self.keys, self.fields = field, (field,), (field,)

    def row(self, example: ScoredExample) -> Sequence[float]:
        return (getattr(example, self.fields[0]),)

    def from_sums(self, sums: np.ndarray, size: np.ndarray) -> dict[str, np.ndarray]:
        return {self.name: _share(sums[:, 0], size)}


class ReplyEmotionAccuracy(SummedMetric):
    """Share of replies (``reply_emotion_acc``) and of gold replies (``reply_emotion_acc_gold``, the ceiling)
    in which the reply-emotion classifier reads the gold emotion."""

    name, keys = "reply_emotion_acc", ("reply_emotion_acc", "reply_emotion_acc_gold")
    fields = ("reply_emotion", "reference_emotion", "emotion")

    def row(self, example: ScoredExample) -> Sequence[float]:
        return example.reply_emotion == example.emotion, example.reference_emotion == example.emotion

    def from_sums(self, sums: np.ndarray, size: np.ndarray) -> dict[str, np.ndarray]:
        return {"reply_emotion_acc": _share(sums[:, 0], size), "reply_emotion_acc_gold": _share(sums[:, 1], size)}


#: every metric by name, in the order of the tables
METRICS: dict[str, CorpusMetric] = {}


def register_metric(metric: CorpusMetric) -> CorpusMetric:
    """Add ``metric`` to :data:`METRICS` (after the others); its keys must be new."""
    taken = {key for other in METRICS.values() for key in other.keys if other.name != metric.name}
    clash = sorted(taken & set(metric.keys))
    if clash:
        raise ValueError(f"metric {metric.name!r}: key(s) {clash} belong to another metric")
    METRICS[metric.name] = metric
    return metric


for _metric in (
    Perplexity(), EmotionAccuracy(), DistinctN(1), DistinctN(2), CorpusBLEU(), AverageLength(), RepetitionRate(3),
    UniqueReplies(), ValenceAgreement(), StoredMean("sim_reference"), StoredMean("sim_context"),
    ReplyEmotionAccuracy(),
):  # fmt: skip
    register_metric(_metric)


def metric_keys() -> tuple[str, ...]:
    """Every figure of the registered metrics, in table order."""
    return tuple(key for metric in METRICS.values() for key in metric.keys)


class CorpusStatistics:
    """The statistics of every registered metric these examples support, computed once; values on any weighting.

    ``problems`` holds, per metric whose examples' content is unfit (an emotion outside the 32 for valence),
    why it is left out.
    """

    def __init__(self, examples: Sequence[ScoredExample], metrics: Mapping[str, CorpusMetric] | None = None) -> None:
        self.n = len(examples)
        self._metrics: dict[str, CorpusMetric] = {}
        self._statistics: dict[str, Any] = {}
        self.problems: dict[str, str] = {}
        for name, metric in (METRICS if metrics is None else metrics).items():
            if not examples:  # no figures of no examples
                break
            problem = metric.problem(examples)
            if problem is None:
                self._metrics[name] = metric
                self._statistics[name] = metric.statistics(examples)
            elif problem:
                self.problems[name] = problem
        self._owner = {key: name for name, metric in self._metrics.items() for key in metric.keys}

    @property
    def available(self) -> tuple[str, ...]:
        """The keys these examples support, in table order."""
        return tuple(self._owner)

    @property
    def counts(self) -> frozenset[str]:
        """The keys that are integer counts."""
        return frozenset(key for metric in self._metrics.values() for key in metric.counts)

    def compute(self, weights: np.ndarray, keys: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Values of ``keys`` (default: every available one) on each row of ``weights`` (B, n): arrays (B,)."""
        keys = self.available if keys is None else keys
        weights = np.asarray(weights)
        if weights.ndim != 2 or weights.shape[1] != self.n:
            raise ValueError(f"weights must have shape (B, {self.n}), got {weights.shape}")
        unknown = [key for key in keys if key not in self._owner]
        if unknown:
            raise ValueError(f"metric(s) {unknown} unavailable; these examples support {list(self.available)}")
        out: dict[str, np.ndarray] = {}
        for name in dict.fromkeys(self._owner[key] for key in keys):
            out.update(self._metrics[name].values(self._statistics[name], weights))
        return {key: out[key] for key in keys}

    def point(self, keys: Sequence[str] | None = None) -> dict[str, float]:
        """The values on the full set of examples; ``{}`` without examples."""
        if self.n == 0:
            return {}
        return {key: float(v[0]) for key, v in self.compute(np.ones((1, self.n), dtype=np.int64), keys).items()}

    def figures(self) -> dict[str, float | int]:
        """Every available value on the full set, counts as ints: what evaluation and validation report."""
        return {key: int(value) if key in self.counts else value for key, value in self.point().items()}
