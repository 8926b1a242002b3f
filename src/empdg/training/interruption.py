"""Stopping a training run by a signal: SIGTERM (how schedulers preempt) and SIGINT (Ctrl-C).

Both end training the same way: Lightning finishes the batch under way and raises its
``SIGTERMException``; :class:`Interruption` then saves ``checkpoints/last.ckpt`` (so ``ckpt_path=`` of
it resumes exactly: the batch is complete, see training/resume_state.py) and marks the MLflow run
KILLED, and :func:`run_training` ends the process with the conventional status 128 + signal number
(143 for SIGTERM, 130 for SIGINT) instead of Lightning's 0. A second Ctrl-C stops at once.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)

#: the signals that stop training with a checkpoint
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class TrainingInterrupted(SystemExit):
    """Training stopped by ``signum``; exits with status 128 + ``signum`` (no traceback)."""

    def __init__(self, signum: int, checkpoint: Path | None) -> None:
        super().__init__(128 + int(signum))
        self.signum = int(signum)
        self.checkpoint = checkpoint


class Interruption(pl.Callback):
    """Turns SIGTERM/SIGINT into a stop at the end of the batch, a checkpoint and a KILLED MLflow run."""

    def __init__(self, checkpoint_path: Path) -> None:
        self.checkpoint_path = Path(checkpoint_path)
        self.signum: int | None = None
        self.saved: Path | None = None
        self._trainer: pl.Trainer | None = None

    def handle(self, signum: int, frame: Any) -> None:
        """The signal handler: ask Lightning to stop after the batch (it checks this flag between batches)."""
        if self.signum == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now, without a checkpoint
        if self.signum is None:
            self.signum = signum
            log.warning(
                "received %s: stopping after the current batch and saving a checkpoint", signal.Signals(signum).name
            )
        if self._trainer is not None:
            # Lightning's own SIGTERM handler sets this too; for SIGINT it is ours to set
            self._trainer._signal_connector.received_sigterm = True

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        # a signal during fit's setup was forgotten when Lightning (re)registered its handlers
        if self.signum is not None:
            trainer._signal_connector.received_sigterm = True

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException) or self.signum is None:
            return
        if trainer.state.fn == "fit":  # in the final validation, training is done and checkpointed already
            if trainer.is_global_zero:
                self.checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
            # a full checkpoint (optimizers, loops, RNG): what an exact resume needs; collective under DDP
            trainer.save_checkpoint(str(self.checkpoint_path), weights_only=False)
            self.saved = self.checkpoint_path
        for logger in trainer.loggers:  # Lightning then finalizes "failed": the logger makes that KILLED
            if hasattr(logger, "killed"):
                logger.killed = True

    @contextlib.contextmanager
    def installed(self, trainer: pl.Trainer) -> Iterator[None]:
        """Install :meth:`handle` for SIGTERM and SIGINT (main thread only) and restore the old handlers after.

        Installed before ``trainer.fit``, so Lightning's SIGTERM handler calls this one after its own.
        """
        self._trainer = trainer
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
        for signum in STOP_SIGNALS:
            signal.signal(signum, self.handle)
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)

    def stopped(self) -> TrainingInterrupted:
        """The exit to raise once ``trainer.fit`` ended by a stop signal."""
        assert self.signum is not None
        return TrainingInterrupted(self.signum, self.saved)
