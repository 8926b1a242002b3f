"""Terminal progress bars that follow the phases instead of Lightning's epochs.

A run trains by phase budgets with ``max_epochs=-1``, so Lightning's own bar showed ``Epoch 4/-2`` over
the batches of one pass through the data, which says nothing about when the run ends. These bars show
the phase's name and its update i/N as the bar, then the run's update i/N, the phase's measured
updates/s and the ETA of training/progress.py (each kind of update priced at its own measured speed),
and the step's losses; Lightning's ``v_num`` is dropped. Rich when it is installed (what Lightning
itself would pick), tqdm otherwise. Validation bars are Lightning's.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ProgressBar, RichProgressBar, TQDMProgressBar

from empdg.training.progress import PhaseTracker, ProgressStatus


def status_text(status: ProgressStatus) -> str:
    """The text after the bar: run update i/N (p%), updates/s, ETA."""
    return f"{status.run_text()} · {status.rate_text()} · {status.eta.text()}"


class _PhaseProgress:
    """The phase tracking both bars share (a mixin before the Lightning bar class)."""

    tracker: PhaseTracker
    last_status: ProgressStatus | None

    def _init_phase_progress(self) -> None:
        self.tracker = PhaseTracker()
        self.last_status = None

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)  # type: ignore[misc]
        items.pop("v_num", None)  # the logger's version number: noise next to the losses
        return items

    def _phase_status(self, pl_module: pl.LightningModule) -> ProgressStatus:
        self.tracker.batch_end(pl_module)
        self.last_status = self.tracker.status(pl_module)
        return self.last_status


if importlib.util.find_spec("rich") is not None:
    from rich.progress import ProgressColumn, Task
    from rich.text import Text

    class PhaseInfoColumn(ProgressColumn):
        """The train task's run progress and ETA; other tasks (validation) keep Lightning's time and speed."""

        def __init__(self, fallback: list[ProgressColumn]) -> None:
            super().__init__()
            self.fallback = fallback

        def render(self, task: Task) -> Text:
            info = task.fields.get("phase_info")
            if info is not None:
                return Text(info, style="dim")
            return Text(" ").join([column.render(task) for column in self.fallback])


class PhaseRichProgressBar(_PhaseProgress, RichProgressBar):
    """Lightning's Rich bar with the phase as the description and the phase's updates as the bar."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._init_phase_progress()
        self._shown_phase: str | None = None

    def configure_columns(self, trainer: pl.Trainer) -> list:
        text, bar, batches, time_column, speed = super().configure_columns(trainer)
        return [text, bar, batches, PhaseInfoColumn([time_column, speed])]

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self.tracker.start(pl_module)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning resets its bar at every pass over the data; ours lasts a phase
        if self.is_disabled or self.progress is None or self.train_progress_bar_id is not None:
            return
        self.train_progress_bar_id = self._add_task(0, "")
        self._shown_phase = None

    def _initialize_train_progress_bar_id(self) -> None:
        self.train_progress_bar_id = self._add_task(0, "")
        self._shown_phase = None

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx) -> None:
        self.tracker.batch_start(pl_module)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx) -> None:
        status = self._phase_status(pl_module)
        if self.is_disabled or self.progress is None:
            return
        if self.train_progress_bar_id is None:  # a resume from a mid-epoch restart
            self._initialize_train_progress_bar_id()
        description = status.phase
        if len(self.validation_description) > len(description):  # as Lightning: no flicker beside "Validation"
            description = f"{description:{len(self.validation_description)}}"
        if status.phase != self._shown_phase:
            self.progress.reset(self.train_progress_bar_id, total=status.phase_total, description=description)
            self._shown_phase = status.phase
        self.progress.update(
            self.train_progress_bar_id, completed=status.phase_done, visible=True, phase_info=status_text(status)
        )
        self._update_metrics(trainer, pl_module)
        self.refresh()


class PhaseTQDMProgressBar(_PhaseProgress, TQDMProgressBar):
    """Lightning's tqdm bar with the phase as the description and the phase's updates as the bar."""

    TRAIN_BAR_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._init_phase_progress()
        self._shown_phase: str | None = None

    def init_train_tqdm(self):
        bar = super().init_train_tqdm()
        bar.bar_format = self.TRAIN_BAR_FORMAT  # tqdm's own rate and remaining time count batches
        return bar

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self.tracker.start(pl_module)

    def on_train_epoch_start(self, trainer: pl.Trainer, *_: Any) -> None:
        pass  # Lightning resets its bar at every pass over the data; ours lasts a phase

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx) -> None:
        self.tracker.batch_start(pl_module)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx) -> None:
        status = self._phase_status(pl_module)
        bar = self._train_progress_bar
        if bar is None or bar.disable:
            return
        if status.phase != self._shown_phase:
            bar.reset(total=status.phase_total)
            bar.set_description(status.phase, refresh=False)
            self._shown_phase = status.phase
        metrics = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                            for k, v in self.get_metrics(trainer, pl_module).items())  # fmt: skip
        bar.n = status.phase_done
        bar.set_postfix_str(", ".join(part for part in (status_text(status), metrics) if part))


def phase_progress_bar() -> ProgressBar:
    """The phase bar in the flavour Lightning would pick: Rich when installed, else tqdm."""
    if importlib.util.find_spec("rich") is not None:
        return PhaseRichProgressBar()
    return PhaseTQDMProgressBar()
