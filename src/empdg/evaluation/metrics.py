"""The evaluation's metrics: the registered corpus metrics (:mod:`empdg.data.corpus_metrics`, the one
implementation validation and the bootstrap tables share) on the evaluated examples, and the emotion
classifier's macro-F1, which only the evaluation reports.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics.classification import MulticlassF1Score

from empdg.data.corpus_metrics import CorpusStatistics, ScoredExample
from empdg.data.vocab import PAD_ID

__all__ = ["NUM_EMOTIONS", "corpus_figures", "emotion_macro_f1", "per_example_nll"]

NUM_EMOTIONS = 32


def corpus_figures(examples: Sequence[ScoredExample]) -> dict[str, float | int]:
    """Every registered metric these examples support, on all of them (``{}`` without examples); a metric whose
    examples are unfit for it (an emotion outside the 32 for valence agreement) is left out with a warning."""
    statistics = CorpusStatistics(examples)
    for name, problem in statistics.problems.items():
        warnings.warn(f"{name} not computed: {problem}", stacklevel=2)
    return statistics.figures()


def per_example_nll(log_probs: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Unsmoothed NLL summed over each example's real target tokens, and their count: shapes (batch,).

    The per-example statistics of perplexity (``nll_sum``, ``n_tokens``): kept per example so that it can be
    recomputed on any resample of the test set (bootstrap).
    """
    mask = target.ne(PAD_ID)
    nll = -log_probs.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    return torch.where(mask, nll, torch.zeros_like(nll)).sum(dim=-1).detach(), mask.sum(dim=-1).detach()


def emotion_macro_f1(num_classes: int = NUM_EMOTIONS) -> MulticlassF1Score:
    """Macro F1, which unlike accuracy is not dominated by the frequent emotions."""
    return MulticlassF1Score(num_classes=num_classes, average="macro")
