"""Callbacks: sample generations at each validation, so progress is visible as text."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytorch_lightning as pl
import torch

from empdg.data.conversation import EMOTIONS
from empdg.data.dataset import collate
from empdg.tracking.resilient_logger import log_artifact


class SampleGenerations(pl.Callback):
    """Greedy-decode a fixed handful of validation examples and log them as a text artifact."""

    def __init__(self, n_examples: int, max_len: int) -> None:
        self.n_examples = n_examples
        self.max_len = max_len
        self.last_text: str = ""

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.n_examples <= 0 or trainer.sanity_checking or not trainer.is_global_zero:
            return
        dataset = trainer.datamodule.datasets["valid"]
        items = [dataset[i] for i in range(min(self.n_examples, len(dataset)))]
        batch = pl_module.transfer_batch_to_device(collate(items), pl_module.device, 0)
        self.last_text = render_samples(pl_module, batch, self.max_len, trainer.global_step)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"step_{trainer.global_step:07d}.txt"
            path.write_text(self.last_text, encoding="utf-8")
            log_artifact(trainer.logger, path, "samples")


@torch.no_grad()
def render_samples(pl_module, batch: dict, max_len: int, step: int) -> str:
    replies = pl_module.generate_replies(batch, max_len=max_len)
    vocab = pl_module.vocab
    logits = pl_module.generator.encode(batch).emotion_logits
    lines = [f"# greedy replies at step {step}\n"]
    for i, reply in enumerate(replies):
        context = " ".join(vocab.decode(batch["context_ids"][i].tolist()))
        gold = " ".join(vocab.decode(batch["target_ids"][i].tolist()))
        predicted = EMOTIONS[int(logits[i].argmax())] if logits is not None else "-"
        lines.append(
            f"emotion: {EMOTIONS[int(batch['emotion_label'][i])]} (predicted: {predicted})\n"
            f"context: {context}\nreply:   {reply}\ngold:    {gold}\n"
        )
    return "\n".join(lines)


class WassersteinPlot(pl.Callback):
    """At the end of training, plot the critics' Wasserstein estimates over steps as an artifact."""

    def __init__(self, output_dir: Path) -> None:
        self.output_dir = Path(output_dir)
        self.path: Path | None = None

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        history = getattr(pl_module, "wasserstein_history", [])
        if not history or not trainer.is_global_zero:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axis = plt.subplots(figsize=(7, 4))
        for key in sorted({k for row in history for k in row if k != "step"}):
            points = [(row["step"], row[key]) for row in history if key in row]
            axis.plot(*zip(*points), label=key.removeprefix("wgan/"))
        axis.set_xlabel("optimizer step")
        axis.set_ylabel("E[D(real)] - E[D(fake)]")
        axis.set_title("critics' Wasserstein estimates")
        axis.legend()
        figure.tight_layout()
        self.path = self.output_dir / "wasserstein.png"
        figure.savefig(self.path, dpi=100)
        plt.close(figure)
        log_artifact(trainer.logger, self.path, "plots")
