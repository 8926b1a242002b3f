"""What the training module measures at each validation.

- :class:`ValidationMetrics`: the generator's teacher-forced numbers (loss, perplexity, emotion
  accuracy, output sharpness). torchmetrics states, summed across DDP ranks when computed, held in an
  ``nn.Module`` so they follow the LightningModule's device.
- :class:`CriticReportCollector`: the critic report of the first ``adversarial.report_batches``
  validation batches (the same examples every time), summed over ranks at the end.
"""

from __future__ import annotations

from collections.abc import Callable

import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric, SumMetric
from torchmetrics.classification import MulticlassAccuracy

from empdg.data.vocab import Vocab
from empdg.models.base import GeneratorOutput
from empdg.models.decoding import ids_to_text
from empdg.training.instruments import critic_report_counts, output_sharpness, reply_diversity, shares_from_counts
from empdg.training.losses import Perplexity


class ValidationMetrics(nn.Module):
    def __init__(self, num_emotions: int, vocab_size: int, metric_name: Callable[[str], str] = str) -> None:
        """``metric_name``: the vocabulary's (``Vocab.metric_name``): subword perplexity is ``val/subword_ppl``."""
        super().__init__()
        self.vocab_size = vocab_size
        self.metric_name = metric_name
        self.loss = MeanMetric()  # unsmoothed NLL per token + emotion CE, averaged over examples
        self.perplexity = Perplexity()
        self.emotion_acc = MulticlassAccuracy(num_classes=num_emotions, average="micro")
        self.entropy = SumMetric()
        self.max_prob = SumMetric()
        self.positions = SumMetric()

    def update(self, losses: dict[str, Tensor], out: GeneratorOutput, batch: dict) -> None:
        """``losses``: the module's ``generator_losses`` of ``out`` on ``batch``."""
        self.loss.update(losses["nll"] + losses["emotion_ce"], weight=batch["target_ids"].shape[0])
        self.perplexity.update(losses["nll_sum"], losses["n_tokens"])
        if losses["emotion_logits"] is not None:
            self.emotion_acc.update(losses["emotion_logits"], batch["emotion_label"])
        entropy, max_prob, positions = output_sharpness(
            out.log_probs[..., : self.vocab_size], ~batch["target_pad_mask"]
        )
        self.entropy.update(entropy)
        self.max_prob.update(max_prob)
        self.positions.update(positions)

    def compute(self, with_emotion_acc: bool) -> dict[str, Tensor]:
        ppl = self.perplexity.compute()
        positions = self.positions.compute().clamp_min(1)
        metrics = {
            "val/loss": self.loss.compute(),
            f"val/{self.metric_name('ppl')}": ppl,
            f"val/{self.metric_name('nll')}": torch.log(ppl),
            "val/entropy": self.entropy.compute() / positions,
            "val/max_prob": self.max_prob.compute() / positions,
        }
        if with_emotion_acc:
            metrics["val/emotion_acc"] = self.emotion_acc.compute()
        return metrics

    def reset(self) -> None:
        for metric in (self.loss, self.perplexity, self.emotion_acc, self.entropy, self.max_prob, self.positions):
            metric.reset()


class CriticReportCollector:
    """Sums the critic report's counts and keeps the greedy replies over one validation."""

    def __init__(self) -> None:
        self.counts: dict[str, float] = {}
        self.replies: list[str] = []

    def add(self, game, batch: dict, out: GeneratorOutput, vocab: Vocab) -> None:
        """``game``: the module's :class:`~empdg.training.adversarial.AdversarialGame`."""
        counts, greedy = critic_report_counts(game, batch, out)
        for key, value in counts.items():
            self.counts[key] = self.counts.get(key, 0.0) + value
        self.replies += [ids_to_text(r, vocab, o) for r, o in zip(greedy.tolist(), batch["oovs"])]

    def finish(self, trainer: pl.Trainer, device: torch.device) -> dict[str, float] | None:
        """This validation's report (counts summed over ranks, as shares), then start over; None if empty."""
        counts, replies = self.counts, self.replies
        self.counts, self.replies = {}, []
        if not replies:
            return None
        keys = sorted(counts)
        if keys and trainer.world_size > 1:
            summed = trainer.strategy.reduce(
                torch.tensor([counts[k] for k in keys], device=device, dtype=torch.float64), reduce_op="sum"
            )
            counts = dict(zip(keys, summed.tolist()))
        report = {f"wgan/critic/{k}": float(v) for k, v in shares_from_counts(counts).items()}
        report |= {f"val/greedy_{k}": float(v) for k, v in reply_diversity(replies).items()}
        return report
