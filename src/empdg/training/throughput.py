"""Training throughput and model size, written with the run so studies can tabulate them.

Wall-clock time of a whole run mixes start-up, validation and checkpointing into the speed of the
model; this callback times only the training steps (from batch start to batch end, the optimizer
step included), per phase, and counts the generator's parameters. The result lands in
``<run folder>/throughput.json`` and, as ``wallclock/*`` metrics, in the run's logger.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl


def count_parameters(module: Any) -> int:
    """Number of trainable scalars (a tied weight counts once)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


class TrainingThroughput(pl.Callback):
    """Seconds spent in training steps and steps taken, per phase; generator parameters."""

    def __init__(self, output_dir: Path) -> None:
        self.output_dir = Path(output_dir)
        self.seconds: dict[str, float] = {}
        self.steps: dict[str, int] = {}
        self.examples: dict[str, int] = {}
        self._started = 0.0
        self._phase: str | None = None
        self._batch_size = 0

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx) -> None:
        self._phase = pl_module.phases.current
        self._batch_size = int(batch["target_ids"].shape[0]) if isinstance(batch, dict) else 0
        self._started = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx) -> None:
        if self._phase is None:
            return
        elapsed = time.perf_counter() - self._started
        self.seconds[self._phase] = self.seconds.get(self._phase, 0.0) + elapsed
        self.steps[self._phase] = self.steps.get(self._phase, 0) + 1
        self.examples[self._phase] = self.examples.get(self._phase, 0) + self._batch_size
        self._phase = None

    def summary(self, pl_module: Any) -> dict[str, Any]:
        phases = {
            phase: {
                "steps": self.steps[phase],
                "seconds": round(self.seconds[phase], 3),
                "steps_per_s": self.steps[phase] / self.seconds[phase] if self.seconds[phase] > 0 else None,
                "examples_per_s": self.examples[phase] / self.seconds[phase] if self.seconds[phase] > 0 else None,
            }
            for phase in self.steps
        }
        return {"generator_parameters": count_parameters(pl_module.generator), "phases": phases}

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        summary = self.summary(pl_module)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        (self.output_dir / "throughput.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
        metrics = {"wallclock/generator_parameters": float(summary["generator_parameters"])}
        for phase, values in summary["phases"].items():
            if values["steps_per_s"] is not None:
                metrics[f"wallclock/{phase}_steps_per_s"] = values["steps_per_s"]
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
