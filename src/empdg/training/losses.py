"""Token-level losses of the generator, and the perplexity they add up to."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric

from empdg.data.corpus_metrics import METRICS
from empdg.data.vocab import PAD_ID
from empdg.models.base import IMPOSSIBLE_LOG_PROB


@dataclass
class SequenceLoss:
    loss: Tensor  # label-smoothed mean over real tokens: what is optimised
    nll_sum: Tensor  # unsmoothed NLL summed over real tokens: perplexity comes from this
    n_tokens: Tensor


def sequence_nll(log_probs: Tensor, target: Tensor, label_smoothing: float, vocab_size: int) -> SequenceLoss:
    """Label-smoothed NLL on log-probabilities (works for the copy mechanism's mixture too).

    Smoothing spreads its mass over the ``vocab_size`` real words only: extended (OOV copy) slots
    of other examples have no probability and must not be rewarded, nor the ids a generator can
    never produce (log-prob ``IMPOSSIBLE_LOG_PROB``: a pretrained model's structural ids).
    """
    mask = target.ne(PAD_ID)
    nll = -log_probs.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    n_tokens = mask.sum()
    nll_sum = (nll * mask).sum()
    if label_smoothing > 0:
        words = log_probs[..., :vocab_size]
        possible = words > IMPOSSIBLE_LOG_PROB / 2
        uniform = -(words * possible).sum(dim=-1) / possible.sum(dim=-1).clamp_min(1)
        per_token = (1 - label_smoothing) * nll + label_smoothing * uniform
    else:
        per_token = nll
    loss = (per_token * mask).sum() / n_tokens.clamp_min(1)
    return SequenceLoss(loss=loss, nll_sum=nll_sum.detach(), n_tokens=n_tokens.detach())


def emotion_cross_entropy(logits: Tensor | None, labels: Tensor) -> Tensor:
    """Emotion classification loss; zero (and graph-free) for models without a classifier."""
    if logits is None:
        return labels.new_zeros((), dtype=torch.float)
    return torch.nn.functional.cross_entropy(logits, labels)


class Perplexity(Metric):
    """exp(total NLL / total tokens) over the corpus, not a mean of per-batch perplexities.

    Fed with :func:`sequence_nll`'s ``nll_sum`` and ``n_tokens`` (the per-example statistics of the registered
    ``ppl`` metric, :mod:`empdg.data.corpus_metrics`, summed over a batch), whose formula gives training's
    ``val/ppl``. States are summed across DDP ranks.
    """

    full_state_update = False
    higher_is_better = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("nll_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("n_tokens", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, nll_sum: Tensor, n_tokens: Tensor) -> None:
        device = self.nll_sum.device
        self.nll_sum += torch.as_tensor(nll_sum).detach().to(device, torch.float64).sum()
        self.n_tokens += torch.as_tensor(n_tokens).detach().to(device, torch.float64).sum()

    def compute(self) -> Tensor:
        if float(self.n_tokens) == 0.0:
            return torch.tensor(float("nan"), dtype=torch.float64)
        # the registered metric's formula on the summed statistics: the evaluation's and the bootstrap's too
        sums = np.asarray([[float(self.nll_sum), float(self.n_tokens)]])
        ppl = METRICS["ppl"].from_sums(sums, np.ones(1))["ppl"][0]
        return torch.tensor(ppl, dtype=torch.float64, device=self.nll_sum.device)
