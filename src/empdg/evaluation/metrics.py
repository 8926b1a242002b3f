"""torchmetrics wrappers of the text metrics, safe under DDP.

Every state is a tensor reduced with ``sum`` (or ``cat`` for the n-gram hash list), so ``compute()`` after a
sync over ranks equals the single-process score over the whole test set. Strings never cross processes:
Distinct-n ships stable 64-bit n-gram hashes instead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score
from torchmetrics.utilities import dim_zero_cat

from empdg.data.text_metrics import (
    bleu_from_statistics,
    bleu_statistics,
    has_repeated_ngram,
    ngrams,
    normalize_reply,
)
from empdg.data.vocab import PAD_ID
from empdg.evaluation.valence import VADER_THRESHOLD, compound_scores, valence_outcome
from empdg.training.losses import Perplexity as Perplexity  # one definition: training's val/ppl too

__all__ = [
    "AverageLength",
    "CorpusBLEU",
    "DistinctN",
    "Perplexity",
    "RepetitionRate",
    "ReplyMetrics",
    "ResponseMetrics",
    "UniqueReplies",
    "ValenceAgreement",
    "emotion_accuracy",
    "emotion_macro_f1",
    "ngram_hash",
    "per_example_nll",
]

NUM_EMOTIONS = 32


def ngram_hash(gram: Sequence[str]) -> int:
    """Signed int64 blake2b hash of an n-gram; stable across processes, unlike the salted ``hash()``."""
    digest = hashlib.blake2b("\x1f".join(gram).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


class DistinctN(Metric):
    """Corpus Distinct-n (x100) whose unique count is exact across DDP shards."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, n: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.n = n
        self.add_state("hashes", default=[], dist_reduce_fx="cat")
        self.add_state("total", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, hyps: Sequence[str]) -> None:
        grams = [gram for hyp in hyps for gram in ngrams(hyp.split(), self.n)]
        self.total += len(grams)
        # Deduplicate per batch to bound memory; cross-batch/rank duplicates are removed in compute().
        unique = sorted({ngram_hash(gram) for gram in grams})
        self.hashes.append(torch.tensor(unique, dtype=torch.long, device=self.total.device))

    def compute(self) -> Tensor:
        if int(self.total) == 0:
            return torch.tensor(0.0, dtype=torch.float64)
        hashes = dim_zero_cat(self.hashes) if isinstance(self.hashes, list) else self.hashes
        return 100.0 * torch.unique(hashes).numel() / self.total.double()


class CorpusBLEU(Metric):
    """Corpus BLEU-1..max_order (0-100, no smoothing) from summed sufficient statistics."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, max_order: int = 4, **kwargs) -> None:
        super().__init__(**kwargs)
        self.max_order = max_order
        zeros = torch.zeros(max_order, dtype=torch.long)
        self.add_state("matches", default=zeros.clone(), dist_reduce_fx="sum")
        self.add_state("totals", default=zeros.clone(), dist_reduce_fx="sum")
        self.add_state("hyp_len", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("ref_len", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, hyps: Sequence[str], refs: Sequence[str]) -> None:
        if len(hyps) != len(refs):
            raise ValueError(f"got {len(hyps)} hypotheses but {len(refs)} references")
        matches, totals = [0] * self.max_order, [0] * self.max_order
        for hyp, ref in zip(hyps, refs):
            m, t, hyp_len, ref_len = bleu_statistics(hyp.split(), ref.split(), self.max_order)
            matches = [a + b for a, b in zip(matches, m)]
            totals = [a + b for a, b in zip(totals, t)]
            self.hyp_len += hyp_len
            self.ref_len += ref_len
        self.matches += torch.tensor(matches, dtype=torch.long, device=self.matches.device)
        self.totals += torch.tensor(totals, dtype=torch.long, device=self.totals.device)

    def compute(self) -> dict[str, float]:
        return bleu_from_statistics(
            self.matches.tolist(), self.totals.tolist(), int(self.hyp_len), int(self.ref_len)
        )


class AverageLength(Metric):
    """Mean response length in whitespace tokens."""

    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("tokens", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, hyps: Sequence[str]) -> None:
        self.tokens += sum(len(hyp.split()) for hyp in hyps)
        self.count += len(hyps)

    def compute(self) -> Tensor:
        return self.tokens.double() / self.count.clamp(min=1)


class RepetitionRate(Metric):
    """Percentage (0-100) of responses that repeat some n-gram, a cheap degeneration detector."""

    full_state_update = False
    higher_is_better = False

    def __init__(self, n: int = 3, **kwargs) -> None:
        super().__init__(**kwargs)
        self.n = n
        self.add_state("repeated", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, hyps: Sequence[str]) -> None:
        self.repeated += sum(has_repeated_ngram(hyp.split(), self.n) for hyp in hyps)
        self.count += len(hyps)

    def compute(self) -> Tensor:
        return 100.0 * self.repeated.double() / self.count.clamp(min=1)


class UniqueReplies(Metric):
    """Number of distinct replies (after whitespace normalisation), exact across DDP shards (hashes)."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("hashes", default=[], dist_reduce_fx="cat")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, hyps: Sequence[str]) -> None:
        unique = sorted({ngram_hash((normalize_reply(hyp),)) for hyp in hyps})
        self.hashes.append(torch.tensor(unique, dtype=torch.long, device=self.count.device))
        self.count += len(hyps)

    def compute(self) -> dict[str, float]:
        """``unique_replies`` (an int count) and ``unique_reply_share`` (count / replies; 0.0 without replies)."""
        if int(self.count) == 0:
            return {"unique_replies": 0, "unique_reply_share": 0.0}
        hashes = dim_zero_cat(self.hashes) if isinstance(self.hashes, list) else self.hashes
        unique = int(torch.unique(hashes).numel())
        return {"unique_replies": unique, "unique_reply_share": unique / int(self.count)}


class ValenceAgreement(Metric):
    """Share of replies whose VADER sentiment has the polarity of the gold emotion (see ``valence.py``)."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, threshold: float = VADER_THRESHOLD, **kwargs) -> None:
        super().__init__(**kwargs)
        self.threshold = threshold
        for name in ("agree", "neutral", "count"):
            self.add_state(name, default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, hyps: Sequence[str], emotions: Sequence[str]) -> None:
        if len(hyps) != len(emotions):
            raise ValueError(f"got {len(hyps)} replies but {len(emotions)} emotions")
        outcomes = [valence_outcome(c, e, self.threshold) for c, e in zip(compound_scores(hyps), emotions)]
        self.agree += sum(agree for agree, _ in outcomes)
        self.neutral += sum(neutral for _, neutral in outcomes)
        self.count += len(outcomes)

    def compute(self) -> dict[str, float]:
        """``valence_agreement`` and ``valence_neutral_share``, shares in 0..1 of all replies."""
        count = max(int(self.count), 1)
        return {"valence_agreement": int(self.agree) / count, "valence_neutral_share": int(self.neutral) / count}


class ReplyMetrics(nn.Module):
    """What the critics should move and the paper's table does not show: reply collapse and sentiment fit.

    Keys: ``unique_replies``, ``unique_reply_share``, ``valence_agreement``, ``valence_neutral_share``.
    """

    def __init__(self, threshold: float = VADER_THRESHOLD) -> None:
        super().__init__()
        self.unique = UniqueReplies()
        self.valence = ValenceAgreement(threshold)

    def update(self, hyps: Sequence[str], emotions: Sequence[str]) -> None:
        """Add generated replies and the gold emotion names of their dialogues."""
        self.unique.update(hyps)
        self.valence.update(hyps, emotions)

    def compute(self) -> dict[str, float]:
        return {**self.unique.compute(), **self.valence.compute()}

    def reset(self) -> None:
        self.unique.reset()
        self.valence.reset()


def per_example_nll(log_probs: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Unsmoothed NLL summed over each example's real target tokens, and their count: shapes (batch,).

    Summed over the batch these are ``sequence_nll``'s ``nll_sum`` and ``n_tokens``; kept per example so
    that perplexity can be recomputed on any resample of the test set (bootstrap).
    """
    mask = target.ne(PAD_ID)
    nll = -log_probs.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    return torch.where(mask, nll, torch.zeros_like(nll)).sum(dim=-1).detach(), mask.sum(dim=-1).detach()


class ResponseMetrics(nn.Module):
    """The response-text metrics of the paper's tables in one object.

    An ``nn.Module`` so that a LightningModule attribute moves its states to the right device for DDP.
    """

    def __init__(self, repetition_n: int = 3) -> None:
        super().__init__()
        self.dist_1 = DistinctN(1)
        self.dist_2 = DistinctN(2)
        self.bleu = CorpusBLEU(max_order=4)
        self.avg_len = AverageLength()
        self.rep = RepetitionRate(repetition_n)
        self.repetition_n = repetition_n

    def update(self, hyps: Sequence[str], refs: Sequence[str]) -> None:
        """Add a batch of generated responses and their gold references."""
        for metric in (self.dist_1, self.dist_2, self.avg_len, self.rep):
            metric.update(hyps)
        self.bleu.update(hyps, refs)

    def compute(self) -> dict[str, float]:
        """Keys: dist_1, dist_2, bleu_1..bleu_4, avg_len, rep_<n> (rep_3 by default)."""
        result = {"dist_1": float(self.dist_1.compute()), "dist_2": float(self.dist_2.compute())}
        result.update(self.bleu.compute())
        result["avg_len"] = float(self.avg_len.compute())
        result[f"rep_{self.repetition_n}"] = float(self.rep.compute())
        return result

    def reset(self) -> None:
        for metric in (self.dist_1, self.dist_2, self.bleu, self.avg_len, self.rep):
            metric.reset()


def emotion_accuracy(num_classes: int = NUM_EMOTIONS) -> MulticlassAccuracy:
    """Micro accuracy of the emotion classifier (the paper's 'Emotion Accuracy')."""
    return MulticlassAccuracy(num_classes=num_classes, average="micro")


def emotion_macro_f1(num_classes: int = NUM_EMOTIONS) -> MulticlassF1Score:
    """Macro F1, which unlike accuracy is not dominated by the frequent emotions."""
    return MulticlassF1Score(num_classes=num_classes, average="macro")
