"""Statistics of a human evaluation: win/tie/loss rates, Bradley-Terry strengths, rating means, agreement.

Intervals are percentile bootstrap intervals over the **dialogues** (every judgment of a drawn dialogue comes
along: the judgments of one dialogue are not independent), re-centred on the full-sample value and drawn
with the same resampled dialogues for every system (:func:`empdg.evaluation.bootstrap.resample_counts`).

- win/tie/loss of system X against Y: shares of the (annotator, dialogue) judgments of that pair;
- Bradley-Terry: ``P(i beats j) = 1 / (1 + exp(θj - θi))`` fitted by ``choix.ilsr_pairwise_dense`` (a tie
  counts as half a win for each side), strengths centred on mean 0; its interval refits the model on each
  resample of the dialogues;
- Krippendorff's α (package ``krippendorff``; ordinal for the 1-5 ratings), units = rating tasks;
- Fleiss' κ (``statsmodels.stats.inter_rater``) over the A/B/tie choices, on the tasks answered by the most
  common number (at least 2) of annotators, as κ needs the same number of raters per item.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from empdg.evaluation.bootstrap import Estimate, percentile_interval, resample_counts

__all__ = [
    "PairJudgment",
    "RatingJudgment",
    "bradley_terry",
    "fleiss_kappa",
    "krippendorff_alpha",
    "rating_means",
    "win_tie_loss",
]

OUTCOMES = ("win", "tie", "loss")


@dataclass(frozen=True)
class PairJudgment:
    """One annotator's choice on one criterion between ``first`` and ``second`` on one dialogue:
    ``outcome`` +1 (first better), 0 (tie), -1 (second better)."""

    dialogue: str
    annotator: str
    criterion: str
    first: str
    second: str
    outcome: int


@dataclass(frozen=True)
class RatingJudgment:
    dialogue: str
    annotator: str
    criterion: str
    system: str
    score: int


def _weights(dialogues: Sequence[str], n_resamples: int, seed: int) -> tuple[dict[str, int], np.ndarray]:
    index = {d: i for i, d in enumerate(dialogues)}
    return index, resample_counts(len(dialogues), n_resamples, seed)


def _estimate(per_dialogue: np.ndarray, totals: np.ndarray, weights: np.ndarray, confidence: float) -> Estimate:
    """The ratio ``sum(per_dialogue) / sum(totals)`` and its interval over the resampled dialogues."""
    value = float(per_dialogue.sum() / totals.sum()) if totals.sum() else math.nan
    denominators = weights @ totals
    replicates = np.divide(weights @ per_dialogue, denominators, out=np.full(len(weights), np.nan),
                           where=denominators > 0)  # fmt: skip
    return Estimate(value, *percentile_interval(replicates, value, confidence))


def win_tie_loss(
    judgments: Sequence[PairJudgment], first: str, second: str, dialogues: Sequence[str],
    n_resamples: int = 1000, seed: int = 0, confidence: float = 0.95,
) -> tuple[dict[str, Estimate], int]:  # fmt: skip
    """Shares of the judgments between ``first`` and ``second`` that ``first`` wins, ties and loses, with
    intervals over ``dialogues`` (the study's dialogues, in a fixed order); and the number of judgments."""
    index, weights = _weights(dialogues, n_resamples, seed)
    counts = {outcome: np.zeros(len(dialogues)) for outcome in OUTCOMES}
    n = 0
    for j in judgments:
        if {j.first, j.second} != {first, second}:
            continue
        outcome = j.outcome if j.first == first else -j.outcome
        counts[OUTCOMES[1 - outcome]][index[j.dialogue]] += 1
        n += 1
    totals = sum(counts.values())
    return {outcome: _estimate(counts[outcome], totals, weights, confidence) for outcome in OUTCOMES}, n


def _comparison_matrices(
    judgments: Sequence[PairJudgment], position: Mapping[str, int], index: Mapping[str, int]
) -> np.ndarray:
    """``[dialogues, systems, systems]`` half-wins: ``[d, i, j]`` counts 2 for each judgment of dialogue ``d``
    that ``i`` wins against ``j`` and 1 for each tie (a tie is half a win for each side)."""
    counts = np.zeros((len(index), len(position), len(position)))
    for j in judgments:
        a, b, d = position[j.first], position[j.second], index[j.dialogue]
        if j.outcome >= 0:
            counts[d, a, b] += 2 if j.outcome > 0 else 1
        if j.outcome <= 0:
            counts[d, b, a] += 2 if j.outcome < 0 else 1
    return counts


def _fit_strengths(comparisons: np.ndarray, alpha: float) -> np.ndarray:
    """θ (mean 0) from a ``[systems, systems]`` win matrix; NaN for all when the fit fails or there is no data."""
    import choix

    if not comparisons.any():
        return np.full(len(comparisons), math.nan)
    try:
        theta = np.asarray(choix.ilsr_pairwise_dense(comparisons, alpha=alpha, max_iter=1000), dtype=float)
    except (RuntimeError, ValueError, np.linalg.LinAlgError):  # not identifiable (a system that never loses, alpha=0)
        return np.full(len(comparisons), math.nan)
    return theta - theta.mean() if np.isfinite(theta).all() else np.full(len(comparisons), math.nan)


def bradley_terry(
    judgments: Sequence[PairJudgment], systems: Sequence[str], dialogues: Sequence[str], alpha: float = 0.01,
    n_resamples: int = 1000, seed: int = 0, confidence: float = 0.95,
) -> dict[str, Estimate]:  # fmt: skip
    """Bradley-Terry log-strengths θ (mean 0) of ``systems`` from the judgments, each with its interval over
    ``dialogues`` (the model refitted on every resample of them); NaN for all when there are none (or when,
    without regularisation, the fit does not converge). A resample whose fit fails is left out of the interval.
    """
    position = {s: i for i, s in enumerate(systems)}
    index, weights = _weights(dialogues, n_resamples, seed)
    per_dialogue = _comparison_matrices(judgments, position, index)
    theta = _fit_strengths(per_dialogue.sum(axis=0), alpha)
    replicates = np.stack([_fit_strengths(np.tensordot(row, per_dialogue, axes=1), alpha) for row in weights])
    return {s: Estimate(float(theta[i]), *percentile_interval(replicates[:, i], float(theta[i]), confidence))
            for s, i in position.items()}  # fmt: skip


def rating_means(
    judgments: Sequence[RatingJudgment], systems: Sequence[str], dialogues: Sequence[str],
    n_resamples: int = 1000, seed: int = 0, confidence: float = 0.95,
) -> dict[str, tuple[Estimate, int]]:  # fmt: skip
    """Each system's mean rating with its interval over ``dialogues``, and its number of ratings."""
    index, weights = _weights(dialogues, n_resamples, seed)
    out = {}
    for system in systems:
        sums, counts = np.zeros(len(dialogues)), np.zeros(len(dialogues))
        for j in judgments:
            if j.system == system:
                sums[index[j.dialogue]] += j.score
                counts[index[j.dialogue]] += 1
        out[system] = (_estimate(sums, counts, weights, confidence), int(counts.sum()))
    return out


def krippendorff_alpha(
    values: Mapping[str, Mapping[str, int | str]], level: str = "ordinal", domain: Sequence[int | str] | None = None
) -> float:
    """Krippendorff's α over units (``unit -> annotator -> value``); NaN when no unit has two values or only one
    value occurs (α is 0/0 then). Categories (``str``) are coded by their index in ``domain``."""
    import krippendorff

    raters = sorted({a for unit in values.values() for a in unit})
    units = [u for u, given in values.items() if len(given) >= 2]
    if not units:
        return math.nan
    code = {v: i for i, v in enumerate(domain)} if domain is not None else None
    matrix = np.full((len(raters), len(units)), np.nan)
    for col, unit in enumerate(units):
        for annotator, value in values[unit].items():
            matrix[raters.index(annotator), col] = code[value] if code is not None else float(value)
    observed = np.unique(matrix[~np.isnan(matrix)])
    if observed.size < 2:
        return math.nan
    value_domain = sorted(code.values()) if code is not None else sorted(set(observed) | set(domain or ()))
    return float(krippendorff.alpha(reliability_data=matrix, level_of_measurement=level, value_domain=value_domain))


def fleiss_kappa(choices: Mapping[str, Sequence[str]], categories: Sequence[str]) -> tuple[float, int, int]:
    """Fleiss' κ over items (``item -> the categories its annotators chose``), on the items with the most common
    number (>= 2) of answers; (κ, items used, raters per item). NaN when no item has two answers."""
    from statsmodels.stats.inter_rater import fleiss_kappa as statsmodels_kappa

    sizes = Counter(len(given) for given in choices.values() if len(given) >= 2)
    if not sizes:
        return math.nan, 0, 0
    raters = max(sizes, key=lambda size: (sizes[size], size))
    table = np.array([[Counter(given)[c] for c in categories] for given in choices.values() if len(given) == raters])
    with np.errstate(invalid="ignore", divide="ignore"):
        kappa = float(statsmodels_kappa(table, method="fleiss"))
    return kappa, len(table), raters
