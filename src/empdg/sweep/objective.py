"""One trial: sample, compose the training config, train, and record how it ended.

A trial must never take the study down: an exception (invalid sampled combination -> ValueError,
out of memory, non-finite loss) marks the trial FAIL with its reason in the trial's user attrs and
its MLflow run, and Optuna carries on. Ctrl-C marks the running trial FAIL ("interrupted") and
stops the study, so the storage never keeps a trial RUNNING forever.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna

from empdg.config import compose
from empdg.sweep.pruning import Objective, OptunaPruningCallback
from empdg.sweep.space import ParamSpec, format_value, merge_overrides, to_overrides
from empdg.sweep.tracking import SweepTracker
from empdg.tracking.run_record import run_tags

log = logging.getLogger(__name__)


def failure_reason(error: BaseException) -> str:
    kind = type(error).__name__
    if "OutOfMemory" in kind or "out of memory" in str(error).lower():
        kind = f"out_of_memory ({kind})"
    return f"{kind}: {error}"


def trial_label(number: int, first_trial: int, n_trials: int | None) -> str:
    """``trial i/N`` of this command's N new trials; the study's own number when it differs."""
    index = number - first_trial + 1
    if n_trials is None or not 1 <= index <= n_trials:  # another command shares the study
        return f"study trial {number}"
    return f"trial {index}/{n_trials}" + ("" if number == index - 1 else f" (study trial {number})")


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class TrialObjective:
    """Callable given to ``study.optimize``; everything it holds is picklable (worker processes)."""

    def __init__(
        self,
        base_overrides: Sequence[str],
        specs: Sequence[ParamSpec],
        objective: Objective,
        trials_dir: Path,
        tracker: SweepTracker | None,
        first_trial: int = 0,
        n_trials: int | None = None,
    ) -> None:
        self.base_overrides = list(base_overrides)
        self.first_trial = first_trial  # the study's number of this command's first trial
        self.n_trials = n_trials
        self.specs = list(specs)
        self.objective = objective
        self.trials_dir = Path(trials_dir)
        self.tracker = tracker

    def trial_overrides(self, trial: optuna.Trial, values: dict[str, Any]) -> list[str]:
        output_dir = self.trials_dir / f"trial_{trial.number:04d}"
        return merge_overrides(
            self.base_overrides,
            to_overrides(self.specs, values),
            [f"paths.output_dir={format_value(str(output_dir))}"],
        )

    def __call__(self, trial: optuna.Trial) -> float:
        values = {spec.name: spec.suggest(trial) for spec in self.specs}
        overrides = self.trial_overrides(trial, values)
        trial.set_user_attr("overrides", overrides)
        callback = OptunaPruningCallback(trial, self.objective)
        state, value, reason, run_id = "FAIL", None, None, None
        label = trial_label(trial.number, self.first_trial, self.n_trials)
        started = time.monotonic()
        shown = ", ".join(f"{name}={_short(v)}" for name, v in values.items())
        print(f"{label} started: {shown}", flush=True)
        try:
            cfg = compose("train", overrides)
            if self.tracker is not None:
                try:
                    run_id = self.tracker.start_trial(trial.number, values, run_tags(cfg))
                except Exception as error:  # tracking is never fatal: the trial's logger falls back on its own
                    log.warning("trial %d: no MLflow run (%s); it logs on its own", trial.number, error)
                else:
                    trial.set_user_attr("mlflow_run_id", run_id)
                    cfg.logger.run_id = run_id
            from empdg.training.run import run_training  # heavy import, only where trials run

            metrics = run_training(cfg, extra_callbacks=[callback])
            # DDP: ranks stopped together instead of raising; ddp_spawn ranks hold their own callback copies,
            # so ask the storage. Single process: a completed budget is never pruned after the fact.
            distributed = "ddp" in str(cfg.trainer.get("strategy", ""))
            if callback.pruned_at is not None or (distributed and trial.should_prune()):
                raise optuna.TrialPruned(f"pruned at step {callback.pruned_at or callback.last_step}")
            value = self.objective(metrics)
            if value is None or not math.isfinite(value):
                raise FloatingPointError(f"objective {self.objective.name} is {value} (metrics: {sorted(metrics)})")
            state = "COMPLETE"
            return value
        except optuna.TrialPruned as pruned:
            state, reason = "PRUNED", str(pruned)
            raise
        except (KeyboardInterrupt, SystemExit) as stop:  # Lightning turns Ctrl-C into SystemExit(1)
            reason = "interrupted (Ctrl-C or SIGTERM)"
            raise KeyboardInterrupt(reason) from stop
        except Exception as error:
            reason = failure_reason(error)
            log.warning("trial %d failed: %s", trial.number, reason)
            raise
        finally:
            outcome = f"{self.objective.name}={value:.6g}" if state == "COMPLETE" else (reason or "")
            print(f"{label} {state} after {time.monotonic() - started:.1f}s: {outcome}", flush=True)
            trial.set_user_attr("train_steps", callback.last_step)
            if reason:
                trial.set_user_attr("fail_reason" if state == "FAIL" else "prune_reason", reason)
            if self.tracker is not None and run_id is not None:
                try:
                    self.tracker.end_trial(run_id, state, value, reason, callback.last_step)
                except Exception as error:  # tracking is never fatal
                    log.warning("could not close MLflow run %s: %s", run_id, error)
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGINT, signal.default_int_handler)  # Lightning leaves Ctrl-C ignored
