"""Report validation values to Optuna from inside training, and stop trials Optuna gives up on.

Pruning only saves time if the decision is taken while training runs, so a Lightning callback
reports the objective at every validation and raises ``optuna.TrialPruned`` right there.
"""

from __future__ import annotations

import importlib
import inspect
import math
import warnings
from collections.abc import Mapping
from typing import Any

import optuna
import pytorch_lightning as pl
from pytorch_lightning.trainer.states import TrainerFn


class Objective:
    """The number a trial is judged by: one validation metric, or a weighted sum of several."""

    def __init__(self, metric: str, weights: Mapping[str, float] | None = None) -> None:
        self.metric = metric
        self.weights = {str(k): float(v) for k, v in (weights or {}).items()}

    @property
    def name(self) -> str:
        if not self.weights:
            return self.metric
        return " + ".join(f"{w:g}*{k}" for k, w in self.weights.items())

    def __call__(self, metrics: Mapping[str, Any]) -> float | None:
        """None when a needed metric is missing (e.g. a model without an emotion classifier)."""
        names = self.weights or {self.metric: 1.0}
        total = 0.0
        for key, weight in names.items():
            if key not in metrics:
                return None
            total += weight * float(metrics[key])
        return total


class OptunaPruningCallback(pl.Callback):
    """Report the objective at each validation of ``fit``; prune when Optuna says so.

    Single process: raise ``TrialPruned`` at once (Lightning tears down and re-raises it). Under DDP
    only rank 0 talks to the storage; its decision is broadcast and every rank stops together, and
    the objective raises ``TrialPruned`` after ``run_training`` returns.
    """

    def __init__(self, trial: optuna.Trial, objective: Objective) -> None:
        self.trial = trial
        self.objective = objective
        self.last_step = 0
        self.reports = 0
        self.pruned_at: int | None = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        step = int(trainer.global_step)
        self.last_step = step
        value = self.objective(trainer.callback_metrics)
        prune = False
        if trainer.is_global_zero and value is not None and math.isfinite(value):
            self.trial.report(value, step)
            self.reports += 1
            prune = self.trial.should_prune()
        prune = bool(trainer.strategy.broadcast(prune, src=0))
        if not prune:
            return
        self.pruned_at = step
        if trainer.world_size > 1:
            trainer.should_stop = True
            return
        raise optuna.TrialPruned(f"pruned at step {step}: {self.objective.name}={value:.6g}")

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.last_step = int(trainer.global_step)


PRUNERS = {
    "median": optuna.pruners.MedianPruner,
    "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
    "hyperband": optuna.pruners.HyperbandPruner,
    "threshold": optuna.pruners.ThresholdPruner,
    "percentile": optuna.pruners.PercentilePruner,
    "none": optuna.pruners.NopPruner,
}


def build_pruner(config: Mapping[str, Any]) -> optuna.pruners.BasePruner:
    """``name`` picks the class (or ``package.module:Class``); the other keys are its arguments."""
    options = dict(config)
    name = str(options.pop("name", "none"))
    if ":" in name:
        module, _, attr = name.partition(":")
        cls = getattr(importlib.import_module(module), attr)
    elif name in PRUNERS:
        cls = PRUNERS[name]
    else:
        raise ValueError(f"sweep.pruner.name={name!r}; use one of {sorted(PRUNERS)} or package.module:Class")
    accepted = set(inspect.signature(cls).parameters)
    ignored = sorted(set(options) - accepted)
    if ignored:  # switching pruner on the command line leaves the previous pruner's keys behind
        warnings.warn(f"sweep.pruner: {name} ignores {ignored}", stacklevel=2)
    return cls(**{k: v for k, v in options.items() if k in accepted})
