"""Bootstrap confidence intervals over test examples, and paired bootstrap tests between systems.

Every test-set metric of ``empdg.evaluate`` is a function of per-example sufficient statistics (n-gram sets,
BLEU match counts, lengths, VADER outcomes, NLL sums), so it can be recomputed on any resample of the examples
without decoding again. A resample is a vector of counts ``w`` (how often each example was drawn, summing to
the number of examples n); the full set is ``w = 1``.

Method (Efron & Tibshirani 1993; for MT metrics Koehn 2004, for paired tests Berg-Kirkpatrick et al. 2012):

- B resamples of n example indices, drawn with replacement from a seeded generator; **the same indices for
  every system**, so differences are paired (same examples, different replies).
- Interval: the percentile interval of the B replicates, re-centred on the full-set value (each replicate is
  shifted by ``value - mean(replicates)``). Drawing with replacement repeats examples, and a repeated example
  adds n-grams but no new ones: set-based metrics (Distinct-n, unique replies) come out systematically lower on
  every resample, by an artefact of resampling rather than by uncertainty. The shift removes that offset; for
  the mean-like metrics (BLEU counts, shares, perplexity) it is negligible.
- Paired test: ``Δ = metric(system) - metric(baseline)`` on the full set and on each resample; the interval is
  the re-centred percentile interval of the replicates of Δ, and the two-sided p-value is
  ``(1 + #{b: |Δ*_b - mean(Δ*)| >= |Δ|}) / (1 + B)``: how often resampling alone moves Δ as far from its centre
  as the observed Δ is from 0. Identical systems give Δ = 0 with p = 1; the smallest p is ``1 / (B + 1)``.

``compare_prediction_files`` is the entry point for scripts (no MLflow needed); ``python -m empdg.compare``
uses it on the ``predictions.jsonl`` artifacts of evaluation runs.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from empdg.data.text_metrics import (
    bleu_from_statistics,
    bleu_statistics,
    has_repeated_ngram,
    ngrams,
    normalize_reply,
)
from empdg.evaluation.scored_examples import ScoredExample, has_nll, read_scored_examples, select_subset
from empdg.evaluation.valence import VADER_THRESHOLD, compound_scores, valence_outcome

__all__ = [
    "ALL_METRICS",
    "DEFAULT_METRICS",
    "BootstrapComparison",
    "Difference",
    "Estimate",
    "ExampleStatistics",
    "SystemResult",
    "bootstrap_compare",
    "compare_prediction_files",
    "paired_difference",
    "percentile_interval",
    "resample_counts",
]

#: Every metric the bootstrap can recompute (ppl needs per-example NLL, emotion_acc predicted emotions).
ALL_METRICS = (
    "ppl", "emotion_acc", "dist_1", "dist_2", "bleu_1", "bleu_2", "bleu_3", "bleu_4", "avg_len", "rep_3",
    "unique_replies", "unique_reply_share", "valence_agreement", "valence_neutral_share",
    "sim_reference", "sim_context", "reply_emotion_acc", "reply_emotion_acc_gold",
)  # fmt: skip
MEANING_METRICS = ("sim_reference", "sim_context", "reply_emotion_acc", "reply_emotion_acc_gold")
DEFAULT_METRICS = ("ppl", "dist_1", "dist_2", "bleu_4", "valence_agreement", "unique_replies")
_COUNT_METRICS = {"unique_replies"}
_CHUNK = 250  # resamples evaluated at once (bounds the memory of the set-based statistics)


def resample_counts(n_examples: int, n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples, n_examples) int matrix: how often each example is drawn in each resample (rows sum to n)."""
    if n_examples < 1 or n_resamples < 1:
        raise ValueError(f"need at least one example and one resample, got {n_examples} and {n_resamples}")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_examples, size=(n_resamples, n_examples))
    flat = (draws + np.arange(n_resamples)[:, None] * n_examples).ravel()
    return np.bincount(flat, minlength=n_resamples * n_examples).reshape(n_resamples, n_examples)


class _DistinctCounter:
    """Distinct items (n-grams, replies) among the drawn examples, vectorised over resamples."""

    def __init__(self, item_ids: np.ndarray, owners: np.ndarray) -> None:
        pairs = np.unique(np.stack([item_ids, owners], axis=1), axis=0) if len(item_ids) else np.zeros((0, 2), int)
        self.owners = pairs[:, 1]  # sorted by item id, then owner
        self.starts = np.flatnonzero(np.r_[True, pairs[1:, 0] != pairs[:-1, 0]]) if len(pairs) else np.zeros(0, int)

    def count(self, weights: np.ndarray) -> np.ndarray:
        if len(self.owners) == 0:
            return np.zeros(weights.shape[0])
        drawn = weights[:, self.owners] > 0
        return np.logical_or.reduceat(drawn, self.starts, axis=1).sum(axis=1).astype(float)


class ExampleStatistics:
    """Per-example sufficient statistics of one system's examples; every metric on any example weighting.

    ``compute(weights)`` with ``weights`` of shape (B, n) gives, per metric, the B values on those resamples;
    with ``weights = ones((1, n))`` the values equal ``empdg.evaluate``'s on the same examples.
    """

    def __init__(self, examples: Sequence[ScoredExample], threshold: float = VADER_THRESHOLD) -> None:
        if not examples:
            raise ValueError("no examples to score")
        self.n = len(examples)
        hyps = [e.pred.split() for e in examples]
        refs = [e.ref.split() for e in examples]
        self._distinct: dict[int, _DistinctCounter] = {}
        self._ngram_totals: dict[int, np.ndarray] = {}
        for order in (1, 2):
            vocabulary: dict[tuple[str, ...], int] = {}
            ids, owners = [], []
            for i, tokens in enumerate(hyps):
                for gram in ngrams(tokens, order):
                    ids.append(vocabulary.setdefault(gram, len(vocabulary)))
                    owners.append(i)
            self._distinct[order] = _DistinctCounter(np.asarray(ids, np.int64), np.asarray(owners, np.int64))
            self._ngram_totals[order] = np.asarray([max(len(t) - order + 1, 0) for t in hyps], dtype=float)
        replies: dict[str, int] = {}
        reply_ids = [replies.setdefault(normalize_reply(e.pred), len(replies)) for e in examples]
        self._replies = _DistinctCounter(np.asarray(reply_ids, dtype=np.int64), np.arange(self.n, dtype=np.int64))
        # BLEU: matches[4], totals[4], hyp_len, ref_len per example
        self._bleu = np.asarray(
            [[*m, *t, h, r] for m, t, h, r in (bleu_statistics(h, r, 4) for h, r in zip(hyps, refs))], dtype=float
        )
        self._lengths = np.asarray([len(t) for t in hyps], dtype=float)
        self._repeated = np.asarray([has_repeated_ngram(t, 3) for t in hyps], dtype=float)
        self._agree = self._neutral = None
        try:
            compounds = compound_scores([e.pred for e in examples])
            outcomes = [valence_outcome(c, e.emotion, threshold) for c, e in zip(compounds, examples)]
        except ValueError:  # an emotion outside the 32 ED labels: no polarity group
            outcomes = None
        if outcomes is not None:
            self._agree = np.asarray([agree for agree, _ in outcomes], dtype=float)
            self._neutral = np.asarray([neutral for _, neutral in outcomes], dtype=float)
        self._correct = None
        if all(e.predicted_emotion is not None for e in examples):
            self._correct = np.asarray([e.predicted_emotion == e.emotion for e in examples], dtype=float)
        # the metrics that read meaning: per-example values the evaluation stored (mean-like, like emotion_acc)
        self._meaning: dict[str, np.ndarray] = {}
        for name in ("sim_reference", "sim_context"):
            if all(getattr(e, name) is not None for e in examples):
                self._meaning[name] = np.asarray([getattr(e, name) for e in examples], dtype=float)
        if all(e.reply_emotion is not None and e.reference_emotion is not None for e in examples):
            self._meaning["reply_emotion_acc"] = np.asarray([e.reply_emotion == e.emotion for e in examples], float)
            self._meaning["reply_emotion_acc_gold"] = np.asarray(
                [e.reference_emotion == e.emotion for e in examples], dtype=float
            )
        self._nll = self._tokens = None
        if has_nll(examples):
            self._nll = np.asarray([e.nll_sum for e in examples], dtype=float)
            self._tokens = np.asarray([e.n_tokens for e in examples], dtype=float)

    @property
    def available(self) -> tuple[str, ...]:
        """The metrics these examples support (ppl needs NLL, emotion_acc predicted emotions)."""
        missing = set()
        if self._agree is None:
            missing.update({"valence_agreement", "valence_neutral_share"})
        if self._nll is None:
            missing.add("ppl")
        if self._correct is None:
            missing.add("emotion_acc")
        missing.update(m for m in MEANING_METRICS if m not in self._meaning)
        return tuple(m for m in ALL_METRICS if m not in missing)

    def compute(self, weights: np.ndarray, metrics: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Values of ``metrics`` (default: every available one) on each row of ``weights`` (B, n): arrays (B,)."""
        metrics = self.available if metrics is None else metrics
        weights = np.asarray(weights)
        if weights.ndim != 2 or weights.shape[1] != self.n:
            raise ValueError(f"weights must have shape (B, {self.n}), got {weights.shape}")
        unknown = [m for m in metrics if m not in self.available]
        if unknown:
            raise ValueError(f"metric(s) {unknown} unavailable; these examples support {list(self.available)}")
        w = weights.astype(float)
        size = w.sum(axis=1)
        out: dict[str, np.ndarray] = {}
        for order in (1, 2):
            if f"dist_{order}" in metrics:
                total = w @ self._ngram_totals[order]
                unique = self._distinct[order].count(weights)
                out[f"dist_{order}"] = np.divide(100.0 * unique, total, out=np.zeros_like(total), where=total > 0)
        if "unique_replies" in metrics or "unique_reply_share" in metrics:
            unique = self._replies.count(weights)
            out["unique_replies"] = unique
            out["unique_reply_share"] = unique / size
        if any(m.startswith("bleu_") for m in metrics):
            sums = w @ self._bleu
            scores = [bleu_from_statistics(row[:4], row[4:8], row[8], row[9]) for row in sums]
            for order in range(1, 5):
                out[f"bleu_{order}"] = np.asarray([s[f"bleu_{order}"] for s in scores])
        out["avg_len"] = (w @ self._lengths) / size
        out["rep_3"] = 100.0 * (w @ self._repeated) / size
        if self._agree is not None:
            out["valence_agreement"] = (w @ self._agree) / size
            out["valence_neutral_share"] = (w @ self._neutral) / size
        if self._correct is not None:
            out["emotion_acc"] = (w @ self._correct) / size
        for name, values in self._meaning.items():
            out[name] = (w @ values) / size
        if self._nll is not None and "ppl" in metrics:
            tokens = w @ self._tokens
            with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
                out["ppl"] = np.exp((w @ self._nll) / tokens)
        return {m: out[m] for m in metrics}

    def point(self, metrics: Sequence[str] | None = None) -> dict[str, float]:
        """The metrics on the full set of examples."""
        return {m: float(v[0]) for m, v in self.compute(np.ones((1, self.n), dtype=np.int64), metrics).items()}

    def replicates(self, weights: np.ndarray, metrics: Sequence[str]) -> dict[str, np.ndarray]:
        """``compute`` in chunks of resamples (bounded memory)."""
        parts = [self.compute(weights[i : i + _CHUNK], metrics) for i in range(0, len(weights), _CHUNK)]
        return {m: np.concatenate([p[m] for p in parts]) for m in metrics}


@dataclass(frozen=True)
class Estimate:
    """A metric on the full set with its bootstrap interval."""

    value: float
    low: float
    high: float

    def format(self, metric: str = "") -> str:
        return f"{_number(self.value, metric)} [{_number(self.low, metric)}, {_number(self.high, metric)}]"


@dataclass(frozen=True)
class Difference:
    """``system - baseline`` on the full set, its paired-bootstrap interval and two-sided p-value."""

    delta: float
    low: float
    high: float
    p_value: float

    def format(self, metric: str = "") -> str:
        sign = lambda x: _number(x, metric, signed=True)
        p = "p<0.001" if self.p_value < 0.0005 else f"p={self.p_value:.3f}"
        return f"{sign(self.delta)} [{sign(self.low)}, {sign(self.high)}] {p}"


def _number(value: float, metric: str, signed: bool = False) -> str:
    if not math.isfinite(value):
        return "nan"
    digits = 0 if metric in _COUNT_METRICS else 1 if abs(value) >= 100 else 3
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def percentile_interval(replicates: np.ndarray, value: float, confidence: float = 0.95) -> tuple[float, float]:
    """Percentile interval of ``replicates`` re-centred on ``value`` (see the module docstring)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    finite = np.asarray(replicates, dtype=float)
    finite = finite[np.isfinite(finite)]
    if not math.isfinite(value) or finite.size == 0:
        return math.nan, math.nan
    shifted = finite - finite.mean() + value
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(shifted, [tail, 100.0 - tail])
    return float(low), float(high)


def paired_difference(
    system: np.ndarray, baseline: np.ndarray, system_value: float, baseline_value: float, confidence: float = 0.95
) -> Difference:
    """Paired bootstrap of ``system - baseline``: replicates computed on the same resampled indices."""
    delta = system_value - baseline_value
    replicates = np.asarray(system, dtype=float) - np.asarray(baseline, dtype=float)
    replicates = replicates[np.isfinite(replicates)]
    if not math.isfinite(delta) or replicates.size == 0:
        return Difference(delta, math.nan, math.nan, math.nan)
    low, high = percentile_interval(replicates, delta, confidence)
    centred = np.abs(replicates - replicates.mean())
    tolerance = 1e-12 * max(1.0, abs(delta))
    extreme = int(np.count_nonzero(centred >= abs(delta) - tolerance))
    return Difference(delta, low, high, (1 + extreme) / (1 + replicates.size))


@dataclass
class SystemResult:
    """One system: its estimates and, unless it is the baseline, its differences to the baseline."""

    name: str
    n_examples: int
    estimates: dict[str, Estimate]
    differences: dict[str, Difference] = field(default_factory=dict)


@dataclass
class BootstrapComparison:
    """The result of :func:`bootstrap_compare`: per system and metric an :class:`Estimate` (and a
    :class:`Difference` to the baseline), with the settings that produced them."""

    systems: dict[str, SystemResult]
    metrics: list[str]
    baseline: str | None
    subset: str
    n_examples: int
    n_resamples: int
    seed: int
    confidence: float

    def markdown(self) -> str:
        """One row per system: ``metric`` cells ``value [low, high]`` and, with a baseline, ``Δ metric`` cells
        ``+delta [low, high] p=...`` right after each metric."""
        level = f"{100 * self.confidence:g}%"
        header = ["system", "n"]
        for metric in self.metrics:
            header.append(f"{metric} [{level} CI]")
            if self.baseline is not None:
                header.append(f"Δ {metric} vs {self.baseline}")
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for name, result in self.systems.items():
            cells = [name, str(result.n_examples)]
            for metric in self.metrics:
                estimate = result.estimates.get(metric)
                cells.append(estimate.format(metric) if estimate else "–")
                if self.baseline is not None:
                    diff = result.differences.get(metric)
                    cells.append("(baseline)" if name == self.baseline else diff.format(metric) if diff else "–")
            lines.append("| " + " | ".join(cells) + " |")
        note = (
            f"\nsubset **{self.subset}**, {self.n_examples} test examples; {level} percentile bootstrap over examples "
            f"({self.n_resamples} resamples, seed {self.seed}), re-centred on the full-set value"
        )
        if self.baseline is not None:
            note += "; Δ: paired bootstrap on the same resampled examples, two-sided p"
        return "\n".join(lines) + "\n" + note + "\n"

    def rows(self) -> list[dict[str, object]]:
        """Long format, one row per (system, metric): value, low, high and, vs the baseline, delta, its
        interval and p_value (empty for the baseline itself and without a baseline)."""
        rows = []
        for name, result in self.systems.items():
            for metric in self.metrics:
                estimate, diff = result.estimates.get(metric), result.differences.get(metric)
                if estimate is None:
                    continue
                row: dict[str, object] = {"system": name, "metric": metric, **asdict(estimate)}
                row.update({"delta": "", "delta_low": "", "delta_high": "", "p_value": ""})
                if diff is not None:
                    row.update(delta=diff.delta, delta_low=diff.low, delta_high=diff.high, p_value=diff.p_value)
                rows.append(row)
        return rows

    def write_csv(self, path: str | Path) -> None:
        fields = ["system", "metric", "value", "low", "high", "delta", "delta_low", "delta_high", "p_value"]
        with Path(path).open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            for row in self.rows():
                if row["metric"] in _COUNT_METRICS:  # an integral count as `61`, not `61.0`
                    row.update({k: int(v) for k, v in row.items() if isinstance(v, float) and v.is_integer()})
                writer.writerow(row)

    def to_json(self) -> str:
        keys = ("baseline", "subset", "n_examples", "n_resamples", "seed", "confidence")
        settings = {key: getattr(self, key) for key in keys}
        return json.dumps({**settings, "metrics": self.metrics, "rows": self.rows()}, indent=2)


def _check_aligned(examples_by_name: Mapping[str, Sequence[ScoredExample]]) -> int:
    """All systems must score the same examples in the same order (for pairing); returns their number."""
    names = list(examples_by_name)
    first = examples_by_name[names[0]]
    for name in names[1:]:
        other = examples_by_name[name]
        if len(other) != len(first):
            raise ValueError(
                f"{name!r} has {len(other)} examples but {names[0]!r} has {len(first)}: "
                "paired comparison needs the same test examples (same data, split and subset)"
            )
        use_ids = all(e.example_id is not None for e in (*first, *other))
        for i, (a, b) in enumerate(zip(first, other)):
            same = a.example_id == b.example_id if use_ids else a.ref == b.ref
            if not same:
                what = f"example_id {a.example_id!r} vs {b.example_id!r}" if use_ids else f"ref {a.ref!r} vs {b.ref!r}"
                raise ValueError(f"{name!r} and {names[0]!r} differ at example {i} ({what}): not the same test set")
    return len(first)


def bootstrap_compare(
    examples_by_name: Mapping[str, Sequence[ScoredExample]],
    baseline: str | None = None,
    *,
    subset: str = "all",
    metrics: Sequence[str] | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> BootstrapComparison:
    """Bootstrap intervals for each system and paired tests against ``baseline``, on in-memory examples.

    Same arguments as :func:`compare_prediction_files`, with the examples instead of file paths.
    """
    if not examples_by_name:
        raise ValueError("nothing to compare")
    if baseline is not None and baseline not in examples_by_name:
        raise ValueError(f"baseline {baseline!r} is not one of {list(examples_by_name)}")
    selected = {name: select_subset(examples, subset) for name, examples in examples_by_name.items()}
    n = _check_aligned(selected)
    if n == 0:
        raise ValueError(f"no examples in subset {subset!r}")
    stats = {name: ExampleStatistics(examples) for name, examples in selected.items()}
    requested = list(dict.fromkeys(DEFAULT_METRICS if metrics is None else metrics))
    unknown = [m for m in requested if m not in ALL_METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {list(ALL_METRICS)}")
    supported = {m for stat in stats.values() for m in stat.available}
    wanted = [m for m in requested if m in supported]
    weights = resample_counts(n, n_resamples, seed)
    values, replicates = {}, {}
    for name, stat in stats.items():
        own = [m for m in wanted if m in stat.available]
        values[name] = stat.point(own)
        replicates[name] = stat.replicates(weights, own)
    systems = {}
    for name in stats:
        estimates = {
            m: Estimate(values[name][m], *percentile_interval(replicates[name][m], values[name][m], confidence))
            for m in values[name]
        }
        differences = {}
        if baseline is not None and name != baseline:
            for m in values[name]:
                if m in values[baseline]:
                    differences[m] = paired_difference(
                        replicates[name][m], replicates[baseline][m], values[name][m], values[baseline][m], confidence
                    )
        systems[name] = SystemResult(name, n, estimates, differences)
    return BootstrapComparison(systems, wanted, baseline, subset, n, n_resamples, seed, confidence)


def compare_prediction_files(
    paths_by_name: Mapping[str, str | Path],
    baseline: str | None = None,
    subset: str = "all",
    *,
    metrics: Sequence[str] | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> BootstrapComparison:
    """Compare systems on their prediction files with bootstrap intervals and paired tests.

    Args:
        paths_by_name: system name -> prediction file: our ``predictions.jsonl`` (from ``empdg.evaluate``; with
            per-example NLL, perplexity is included) or an EmpDG release ``pred_*.txt``. All files must hold
            the same test examples in the same order (checked by ``example_id``, else by the gold reply).
        baseline: a key of ``paths_by_name``; every other system gets ``Δ = system - baseline`` with a paired
            interval and a two-sided p-value. None: intervals only.
        subset: ``all``, or ``feedback`` to keep only turns followed by a speaker utterance (needs the
            ``has_feedback`` flag that ``empdg.evaluate`` writes; the release files are that subset already).
        metrics: metric names from :data:`ALL_METRICS` (default :data:`DEFAULT_METRICS`). A metric a file
            cannot support (ppl without per-example NLL, emotion_acc without predicted emotions) is left out
            for that file, and dropped when no file supports it.
        n_resamples: bootstrap resamples B (the smallest reportable p-value is ``1 / (B + 1)``).
        seed: seed of the resampled indices (same seed, same files -> same numbers).
        confidence: level of the intervals.

    Returns:
        A :class:`BootstrapComparison`; ``.markdown()`` is the table, ``.rows()`` / ``.write_csv()`` the long
        format, ``.systems[name].estimates[metric]`` / ``.differences[metric]`` the numbers.
    """
    examples = {name: read_scored_examples(path) for name, path in paths_by_name.items()}
    return bootstrap_compare(
        examples, baseline, subset=subset, metrics=metrics, n_resamples=n_resamples, seed=seed, confidence=confidence
    )
