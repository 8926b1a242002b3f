"""Exact resume: what a checkpoint holds beyond weights and optimizer states, and when it goes back.

A resumed run must continue as if it had never stopped: the same phase, the same place in gradient
accumulation and in the critic/generator cycle, the same batches and the same random numbers.
Lightning restores weights, optimizer and scheduler states and its loop counters; :class:`ExactResume`
saves and restores the rest, under the checkpoint's ``"empdg"`` key:

- the phase progress and :class:`TrainingCounters`;
- the torch, Python and numpy RNG states, put back right before the first resumed batch: creating
  the data iterator, which on resume happens after every other hook, draws from the global RNG;
- the data position (``batches_in_epoch``), handed to the datamodule's ``resume_after``.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from empdg.training.phases import PhaseSchedule

CHECKPOINT_KEY = "empdg"


@dataclass
class TrainingCounters:
    """Progress the module counts itself (Lightning's ``global_step`` counts optimizer steps only)."""

    micro_step: int = 0  # generator batches accumulated since the last generator update
    cycle_position: int = 0  # updates done in the current adversarial cycle (critic updates first)
    generator_adv_updates: int = 0  # adversarial generator updates so far: the gradient probe's clock
    batches_in_epoch: int = 0  # training batches seen in this epoch: where the data resumes
    skipped_nonfinite: int = 0  # updates skipped for a non-finite loss (training.on_nonfinite=skip)


def rng_states() -> dict[str, Any]:
    """The global RNG states as tensors and plain values, so checkpoints load with ``weights_only=True``."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
    }


def restore_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    random.setstate(states["python"])
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


class ExactResume:
    """Saves and restores ``phases`` and ``counters`` (both the module's; updated in place)."""

    def __init__(self, phases: PhaseSchedule, counters: TrainingCounters) -> None:
        self.phases = phases
        self.counters = counters
        self._pending_rng: dict[str, Any] | None = None

    def save(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = {
            "phases": self.phases.state_dict(),
            **dataclasses.asdict(self.counters),
            "rng": rng_states(),
        }

    def load(self, checkpoint: dict[str, Any], datamodule: Any = None) -> None:
        """Counters and phases now; the RNG states at the first resumed batch (:meth:`before_batch`)."""
        state = checkpoint.get(CHECKPOINT_KEY)
        if not state:
            return
        self.phases.load_state_dict(state["phases"])
        for counter in dataclasses.fields(TrainingCounters):  # counters added later default to 0
            setattr(self.counters, counter.name, int(state.get(counter.name, 0)))
        self._pending_rng = state["rng"]
        if datamodule is not None and hasattr(datamodule, "resume_after"):
            datamodule.resume_after(self.counters.batches_in_epoch)

    def before_batch(self, trainer: pl.Trainer) -> None:
        """Called at every training batch start; acts once, before the first batch of a resumed run."""
        if self._pending_rng is None:
            return
        # a checkpoint written by the end-of-budget validation predates Lightning's increment of its
        # (private) count of batches that stepped, the logging step: without this a resumed run logs
        # every metric one step too low
        epoch_loop = trainer.fit_loop.epoch_loop
        epoch_loop._batches_that_stepped = epoch_loop.total_batch_idx
        restore_rng_states(self._pending_rng)
        self._pending_rng = None
