"""Bootstrap confidence intervals over test examples, and paired bootstrap tests between systems.

Every test-set metric of ``empdg.evaluate`` is a function of per-example sufficient statistics (n-gram sets,
BLEU match counts, lengths, VADER outcomes, NLL sums; :mod:`empdg.data.corpus_metrics`, the evaluation's own
implementation), so it can be recomputed on any resample of the examples without decoding again. A resample
is a vector of counts ``w`` (how often each example was drawn, summing to the number of examples n); the full
set is ``w = 1``.

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

from empdg.data.corpus_metrics import METRICS, CorpusStatistics, metric_keys
from empdg.evaluation.scored_examples import ScoredExample, read_scored_examples, select_subset

__all__ = [
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

#: the metrics of a comparison unless told (any of ``empdg.data.corpus_metrics.metric_keys()`` may be asked for)
DEFAULT_METRICS = ("ppl", "dist_1", "dist_2", "bleu_4", "valence_agreement", "unique_replies")
_CHUNK = 250  # resamples evaluated at once (bounds the memory of the set-based statistics)


def _count_metrics() -> set[str]:
    return {key for metric in METRICS.values() for key in metric.counts}


def resample_counts(n_examples: int, n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples, n_examples) int matrix: how often each example is drawn in each resample (rows sum to n)."""
    if n_examples < 1 or n_resamples < 1:
        raise ValueError(f"need at least one example and one resample, got {n_examples} and {n_resamples}")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_examples, size=(n_resamples, n_examples))
    flat = (draws + np.arange(n_resamples)[:, None] * n_examples).ravel()
    return np.bincount(flat, minlength=n_resamples * n_examples).reshape(n_resamples, n_examples)


class ExampleStatistics(CorpusStatistics):
    """The registered metrics' per-example statistics of one system's examples (the evaluation's own
    implementation, :mod:`empdg.data.corpus_metrics`): ``compute(weights)`` with ``weights`` of shape (B, n)
    gives, per metric, the B values on those resamples; ``point()`` equals ``empdg.evaluate``'s figures."""

    def __init__(self, examples: Sequence[ScoredExample]) -> None:
        if not examples:
            raise ValueError("no examples to score")
        super().__init__(examples)

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
    digits = 0 if metric in _count_metrics() else 1 if abs(value) >= 100 else 3
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
            counts = _count_metrics()
            for row in self.rows():
                if row["metric"] in counts:  # an integral count as `61`, not `61.0`
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
    unknown = [m for m in requested if m not in metric_keys()]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {list(metric_keys())}")
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
        metrics: metric names from :func:`~empdg.data.corpus_metrics.metric_keys` (default
            :data:`DEFAULT_METRICS`). A metric a file cannot support (ppl without per-example NLL, emotion_acc
            without predicted emotions) is left out for that file, and dropped when no file supports it.
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
