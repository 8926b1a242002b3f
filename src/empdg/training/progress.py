"""A one-line progress summary every N updates, for runs without a progress bar (logs, clusters).

``callbacks.progress.every_n_steps`` (0 disables). An *update* is one step of a phase's budget unit:
a generator update in generator pre-training, a critic update in critic pre-training, and each of
the ``n_critic + g_steps`` updates of an adversarial cycle, so the total is
``generator_pretrain + critic_pretrain + adversarial * (n_critic + g_steps)`` and the ETA covers
every phase still to come. The losses shown are those of the step just taken
(``pl_module.step_metrics``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl

log = logging.getLogger(__name__)

#: the values shown, in this order, when the step logged them
MAIN_METRICS = (
    "train/loss",
    "train/nll",
    "train/emotion_ce",
    "train/g_adv",
    "train/d_loss",
    "train/d_sem_wdist",
    "train/d_emo_wdist",
)


def cycle_length(pl_module: Any) -> int:
    """Updates per adversarial cycle (``n_critic + g_steps``, never 0: the schema rules that out)."""
    return max(pl_module.adv.n_critic + pl_module.adv.g_steps, 1)


def updates_total(pl_module: Any) -> int:
    """The run's whole budget in updates (an adversarial cycle counts ``n_critic + g_steps``)."""
    budgets = pl_module.phases.budgets
    cycle = cycle_length(pl_module)
    return sum(int(b) * (cycle if name == "adversarial" else 1) for name, b in budgets.items())


def updates_done(pl_module: Any) -> int:
    """Updates done so far, counting the position inside the current adversarial cycle."""
    phases = pl_module.phases
    cycle = cycle_length(pl_module)
    done = sum(int(d) * (cycle if name == "adversarial" else 1) for name, d in phases.done.items())
    if phases.current == "adversarial":
        done += pl_module.counters.cycle_position
    return done


def format_duration(seconds: float) -> str:
    seconds = max(int(round(seconds)), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def format_metrics(metrics: Mapping[str, float]) -> str:
    shown = [f"{key.removeprefix('train/')}={metrics[key]:.4g}" for key in MAIN_METRICS if key in metrics]
    return " ".join(shown)


class ProgressLog(pl.Callback):
    """Log ``phase, update i/N (p%), step, losses, updates/s, ETA`` every ``every_n_steps`` updates."""

    def __init__(self, every_n_steps: int) -> None:
        if every_n_steps < 0:
            raise ValueError(f"callbacks.progress.every_n_steps must be >= 0, got {every_n_steps}")
        self.every_n_steps = int(every_n_steps)
        self.last_line: str = ""
        self._mark_time = 0.0
        self._mark_updates = 0
        self._phase: str | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # a resumed run starts counting from the restored position
        self._mark_time = time.monotonic()
        self._mark_updates = updates_done(pl_module)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx) -> None:
        self._phase = pl_module.phases.current  # the phase this step trains (it may end with the step)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx) -> None:
        if self.every_n_steps <= 0 or not trainer.is_global_zero:
            return
        done = updates_done(pl_module)
        if done // self.every_n_steps <= self._mark_updates // self.every_n_steps:
            return  # no multiple of every_n_steps crossed since the last line
        now = time.monotonic()
        elapsed = now - self._mark_time
        rate = (done - self._mark_updates) / elapsed if elapsed > 0 else float("inf")
        self.last_line = self.summary(trainer, pl_module, done, rate)
        log.info(self.last_line)
        self._mark_time, self._mark_updates = now, done

    def summary(self, trainer: pl.Trainer, pl_module: Any, done: int, rate: float) -> str:
        total = updates_total(pl_module)
        phase = self._phase or pl_module.phases.current or "done"
        eta = format_duration((total - done) / rate) if 0 < rate < float("inf") else "?"
        losses = format_metrics(getattr(pl_module, "step_metrics", {}) or {})
        share = 100.0 * done / max(total, 1)
        parts = [
            f"progress: {phase} | update {done}/{total} ({share:.1f}%) | step {trainer.global_step}",
            losses,
            f"{rate:.2f} updates/s | ETA {eta}",
        ]
        return " | ".join(part for part in parts if part)
