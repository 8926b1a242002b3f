"""Progress that follows the phases: phase, update i/N of the phase and of the run, and an ETA.

An *update* is one step of a phase's budget unit: a generator update in generator pre-training, a
critic update in critic pre-training, and each of the ``n_critic + g_steps`` updates of an adversarial
cycle, so the run's total is ``generator_pretrain + critic_pretrain + adversarial * (n_critic + g_steps)``.

The ETA rule. Updates come in three kinds of very different cost: MLE generator updates, critic updates
(critic pre-training and the first ``n_critic`` of every cycle), and adversarial generator updates
(free-running generation through the critics, the last ``g_steps`` of a cycle). Each kind's seconds per
update is measured in this process, as wall time from one update to the next (so validation and
checkpointing between them count). The time left is the sum, over the updates still to come, of their
kind's measured cost. While a kind still to come has not been timed, no number is guessed: the ETA of the
run says ``after <phase> starts`` (the first phase that brings an untimed kind), and within a phase whose
kind is not timed yet (its first update, or an adversarial cycle before its first generator update) the
ETA is ``?``. A critic update costs the same in either critic phase, so critic pre-training's speed
prices the adversarial phase's critic updates before that phase starts.

:class:`ProgressLog` writes this as a line every ``callbacks.progress.every_n_steps`` updates (logs,
clusters, sweeps); the progress bars of training/progress_bar.py show the same in the terminal.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl

from empdg.config.schema import PHASES

log = logging.getLogger(__name__)

#: the values shown, in this order, when the step logged them
MAIN_METRICS = (
    "train/loss",
    "train/nll",
    "train/emotion_ce",
    "wgan/g_adv",
    "wgan/d_loss",
    "wgan/d_sem_wdist",
    "wgan/d_emo_wdist",
)

#: update kinds, by cost: MLE generator, critic, adversarial generator updates
GENERATOR, CRITIC, ADVERSARIAL_GENERATOR = "generator", "critic", "adversarial_generator"


@dataclass(frozen=True)
class RunPosition:
    """Where a run stands: phase budgets and updates done (an adversarial phase counts cycles)."""

    budgets: Mapping[str, int]
    done: Mapping[str, int]
    n_critic: int = 1
    g_steps: int = 5
    cycle_position: int = 0  # updates done in the current adversarial cycle (critic updates first)

    @classmethod
    def of(cls, pl_module: Any) -> RunPosition:
        phases, adv = pl_module.phases, pl_module.adv
        return cls(
            dict(phases.budgets), dict(phases.done), int(adv.n_critic), int(adv.g_steps),
            int(pl_module.counters.cycle_position),
        )  # fmt: skip

    @property
    def cycle(self) -> int:
        """Updates per adversarial cycle (never 0: the schema rules ``n_critic + g_steps = 0`` out)."""
        return max(self.n_critic + self.g_steps, 1)

    @property
    def current(self) -> str | None:
        return next((name for name in PHASES if int(self.done.get(name, 0)) < int(self.budgets.get(name, 0))), None)

    def phase_total(self, phase: str) -> int:
        return int(self.budgets.get(phase, 0)) * (self.cycle if phase == "adversarial" else 1)

    def phase_done(self, phase: str) -> int:
        done = int(self.done.get(phase, 0)) * (self.cycle if phase == "adversarial" else 1)
        if phase == "adversarial" and self.current == "adversarial":
            done += self.cycle_position
        return min(done, self.phase_total(phase))

    @property
    def run_total(self) -> int:
        return sum(self.phase_total(name) for name in PHASES)

    @property
    def run_done(self) -> int:
        return sum(self.phase_done(name) for name in PHASES)

    def next_kind(self) -> str | None:
        """The kind of the update the next training step works on (None when training is over)."""
        phase = self.current
        if phase == "adversarial":
            return CRITIC if self.cycle_position < self.n_critic else ADVERSARIAL_GENERATOR
        return {"generator_pretrain": GENERATOR, "critic_pretrain": CRITIC}.get(phase or "")

    def remaining(self, phase: str) -> dict[str, int]:
        """Updates of each kind that ``phase`` still has to do."""
        if phase != "adversarial":
            kind = GENERATOR if phase == "generator_pretrain" else CRITIC
            return {kind: self.phase_total(phase) - self.phase_done(phase)}
        cycles_left = int(self.budgets.get(phase, 0)) - int(self.done.get(phase, 0))
        if cycles_left <= 0:
            return {CRITIC: 0, ADVERSARIAL_GENERATOR: 0}
        position = self.cycle_position if self.current == "adversarial" else 0
        return {
            CRITIC: cycles_left * self.n_critic - min(position, self.n_critic),
            ADVERSARIAL_GENERATOR: cycles_left * self.g_steps - max(position - self.n_critic, 0),
        }


@dataclass(frozen=True)
class Eta:
    """Seconds left in the current phase and in the run; None = not known yet (``waiting_for`` says until when)."""

    phase: float | None
    run: float | None
    waiting_for: str | None = None  # a phase not started yet whose kind of update is still untimed

    def text(self) -> str:
        phase = "?" if self.phase is None else format_duration(self.phase)
        if self.run is not None:
            run = format_duration(self.run)
        elif self.waiting_for is not None:
            run = f"after {self.waiting_for} starts"
        else:
            run = "?"
        return f"ETA phase {phase}, run {run}"


class PhaseTimer:
    """Measured seconds per update of each kind (and per phase, for the updates/s shown)."""

    def __init__(self) -> None:
        self.kind_seconds: dict[str, float] = {}
        self.kind_updates: dict[str, int] = {}
        self.phase_seconds: dict[str, float] = {}
        self.phase_updates: dict[str, int] = {}

    def record(self, phase: str, kind: str, seconds: float, updates: int = 1) -> None:
        self.kind_seconds[kind] = self.kind_seconds.get(kind, 0.0) + seconds
        self.kind_updates[kind] = self.kind_updates.get(kind, 0) + updates
        self.phase_seconds[phase] = self.phase_seconds.get(phase, 0.0) + seconds
        self.phase_updates[phase] = self.phase_updates.get(phase, 0) + updates

    def seconds_per_update(self, kind: str) -> float | None:
        updates = self.kind_updates.get(kind, 0)
        return self.kind_seconds[kind] / updates if updates else None

    def rate(self, phase: str) -> float | None:
        """Updates per second measured in ``phase`` (None before its first timed update)."""
        seconds = self.phase_seconds.get(phase, 0.0)
        return self.phase_updates.get(phase, 0) / seconds if seconds > 0 else None

    def _seconds_left(self, position: RunPosition, phase: str) -> float | None:
        total = 0.0
        for kind, count in position.remaining(phase).items():
            if count <= 0:
                continue
            cost = self.seconds_per_update(kind)
            if cost is None:
                return None
            total += count * cost
        return total

    def eta(self, position: RunPosition) -> Eta:
        current = position.current
        if current is None:
            return Eta(0.0, 0.0)
        phase = self._seconds_left(position, current)
        run: float | None = phase
        waiting_for = None
        for name in PHASES[PHASES.index(current) + 1 :]:
            left = self._seconds_left(position, name)
            if left is None:
                run, waiting_for = None, name if phase is not None else None
                break
            if run is not None:
                run += left
        return Eta(phase, run, waiting_for)


@dataclass(frozen=True)
class ProgressStatus:
    """What a progress display shows after a step."""

    phase: str  # the phase of the step just taken ("done" when none)
    phase_done: int
    phase_total: int
    run_done: int
    run_total: int
    rate: float | None  # updates/s measured in ``phase``
    eta: Eta

    def run_text(self) -> str:
        share = 100.0 * self.run_done / max(self.run_total, 1)
        return f"run update {self.run_done}/{self.run_total} ({share:.1f}%)"

    def rate_text(self) -> str:
        return "? updates/s" if self.rate is None else f"{self.rate:.2f} updates/s"


class PhaseTracker:
    """Times the updates of a run as they happen and answers :class:`ProgressStatus`; shared by the bars and lines.

    A step that completes no update (a micro-batch of gradient accumulation, a critic batch without
    feedback, a skipped non-finite step) adds its time to the next update of the same kind.
    """

    def __init__(self, clock=time.monotonic) -> None:
        self.clock = clock
        self.timer = PhaseTimer()
        self._mark = 0.0
        self._phase: str | None = None
        self._kind: str | None = None
        self._done_before = 0

    def start(self, pl_module: Any) -> None:
        self._mark = self.clock()  # a resumed run starts timing from the restored position

    def batch_start(self, pl_module: Any) -> None:
        position = RunPosition.of(pl_module)
        self._phase, self._kind, self._done_before = position.current, position.next_kind(), position.run_done

    def batch_end(self, pl_module: Any) -> bool:
        """Record the step's time; True when it completed an update."""
        done = RunPosition.of(pl_module).run_done
        if self._phase is None or self._kind is None or done <= self._done_before:
            return False
        now = self.clock()
        self.timer.record(self._phase, self._kind, now - self._mark, done - self._done_before)
        self._mark = now
        return True

    @property
    def phase(self) -> str | None:
        """The phase of the step just taken (it may have ended with that step)."""
        return self._phase

    def status(self, pl_module: Any) -> ProgressStatus:
        position = RunPosition.of(pl_module)
        phase = self._phase or position.current or "done"
        eta = self.timer.eta(position)
        if phase != position.current:  # the step just taken ended its phase: the next one may be untimed
            eta = Eta(0.0, eta.run, eta.waiting_for or (position.current if eta.run is None else None))
        return ProgressStatus(
            phase=phase,
            phase_done=position.phase_done(phase) if phase in PHASES else 0,
            phase_total=position.phase_total(phase) if phase in PHASES else 0,
            run_done=position.run_done,
            run_total=position.run_total,
            rate=self.timer.rate(phase),
            eta=eta,
        )


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
    shown = [f"{key.rsplit('/', 1)[-1]}={metrics[key]:.4g}" for key in MAIN_METRICS if key in metrics]
    return " ".join(shown)


class ProgressLog(pl.Callback):
    """Log ``phase update i/N | run update i/N (p%) | step | losses | updates/s | ETA`` every N updates."""

    def __init__(self, every_n_steps: int) -> None:
        if every_n_steps < 0:
            raise ValueError(f"callbacks.progress.every_n_steps must be >= 0, got {every_n_steps}")
        self.every_n_steps = int(every_n_steps)
        self.last_line: str = ""
        self.tracker = PhaseTracker()
        self._last_logged = 0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.tracker.start(pl_module)
        self._last_logged = RunPosition.of(pl_module).run_done

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx) -> None:
        self.tracker.batch_start(pl_module)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx) -> None:
        if not self.tracker.batch_end(pl_module) or self.every_n_steps <= 0 or not trainer.is_global_zero:
            return
        done = RunPosition.of(pl_module).run_done
        if done // self.every_n_steps <= self._last_logged // self.every_n_steps:
            return  # no multiple of every_n_steps crossed since the last line
        self.last_line = self.summary(trainer, pl_module)
        log.info(self.last_line)
        self._last_logged = done

    def summary(self, trainer: pl.Trainer, pl_module: Any) -> str:
        status = self.tracker.status(pl_module)
        losses = format_metrics(getattr(pl_module, "step_metrics", {}) or {})
        parts = [
            f"progress: {status.phase} update {status.phase_done}/{status.phase_total}",
            status.run_text(),
            f"step {trainer.global_step}",
            losses,
            status.rate_text(),
            status.eta.text(),
        ]
        return " | ".join(part for part in parts if part)
