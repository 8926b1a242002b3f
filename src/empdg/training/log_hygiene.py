"""Silence the library messages that every run prints and that help nobody here -- precisely.

Each filter matches one message (its opening words), never a whole category or module, so any
other warning still shows. Installed at the start of every training run (``run_training``).
"""

from __future__ import annotations

import logging
import re
import warnings

from lightning_fabric.utilities.warnings import PossibleUserWarning

# (message regex, category, why it does not apply to empdg)
IGNORED_WARNINGS: tuple[tuple[str, type[Warning], str], ...] = (
    (
        "You're resuming from a checkpoint that ended before the epoch ended and your dataloader is not resumable",
        PossibleUserWarning,
        # the run restores its data position itself: the checkpoint stores the batches done in the
        # epoch and EmpDGModule.on_load_checkpoint calls datamodule.resume_after(...), whose batch
        # sampler skips them, so an exact resume continues with the very next batch
        "empdg resumes the data position itself (datamodule.resume_after)",
    ),
    (
        "Using ModelCheckpoint with manual optimization and every_n_train_steps, but no pre-optimization state",
        UserWarning,
        # Lightning suggests saving weights from *before* optimizer.step(); empdg wants the state
        # after the update, consistent with the phase counters and RNG saved beside it, so that a
        # resume from such a checkpoint continues exactly
        "empdg checkpoints the post-update state on purpose",
    ),
    (
        re.escape("It is recommended to use `self.log('") + r"(wgan/critic/|val/greedy_|val/sim_|val/reply_emotion_)",
        PossibleUserWarning,
        # one warning per key of the validation report under DDP (21 lines): its critic counts are
        # already summed over the ranks (CriticReportCollector.finish), its reply diversity and meaning
        # metrics are rank 0's own sample, and rank 0 alone logs them; a sync_dist mean would be neither
        "the validation report is reduced across ranks, or rank 0's own, before it is logged",
    ),
    (
        re.escape("`isinstance(treespec, LeafSpec)` is deprecated"),
        FutureWarning,
        # raised inside Lightning 2.6 (utilities/_pytree.py builds a LeafSpec) under torch >= 2.10;
        # nothing in empdg uses LeafSpec, and there is nothing a user could change
        "Lightning-internal use of a torch API",
    ),
)

# Lightning's advertisement for its cloud logger, printed at every Trainer construction; empdg
# logs to MLflow (or CSV) and has no use for it
IGNORED_LOG_MESSAGES: tuple[str, ...] = ("try installing [litlogger]",)
LIGHTNING_INFO_LOGGERS = ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero")


class DropMessages(logging.Filter):
    """Drop log records whose message contains one of ``fragments``."""

    def __init__(self, fragments: tuple[str, ...]) -> None:
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(fragment in message for fragment in self.fragments)


def install_log_filters() -> None:
    """Idempotent: warnings filters replace their duplicates, the logging filter is added once."""
    for pattern, category, _why in IGNORED_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern, category=category)
    for name in LIGHTNING_INFO_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropMessages) for f in logger.filters):
            logger.addFilter(DropMessages(IGNORED_LOG_MESSAGES))
