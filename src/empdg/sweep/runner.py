"""Run a study: check the configuration, open the study, optimise in 1..n worker processes, report.

Parallel trials run in separate PROCESSES (spawned, not forked: torch and CUDA do not survive a
fork), each calling ``study.optimize`` on the shared storage -- Optuna's thread-based ``n_jobs``
would share one Python interpreter and one set of torch threads.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf

from empdg.config import compose
from empdg.config.runtime import num_threads_of, set_torch_threads
from empdg.errors import is_number, is_whole, whole_problems
from empdg.sweep.objective import TrialObjective
from empdg.sweep.pruning import Objective, build_pruner
from empdg.sweep.report import IMPORTANCE_MIN_TRIALS, finish
from empdg.sweep.space import ParamSpec, format_value, forwarded_overrides, merge_overrides, parse_space
from empdg.sweep.study import build_sampler, build_storage, check_storage, masked, open_study
from empdg.sweep.tracking import SweepTracker
from empdg.training.settings import validate_config

log = logging.getLogger(__name__)


@dataclass
class SweepPlan:
    """Everything a worker process needs (plain data, picklable)."""

    settings: dict[str, Any]
    specs: list[ParamSpec]
    base_overrides: list[str]
    output_dir: str
    tracker: SweepTracker | None
    num_threads: int = 1  # runtime.num_threads of the sweep command: split between its worker processes
    first_trial: int = 0  # the study's number of this command's first trial ...
    n_trials: int | None = None  # ... and how many it runs: "trial i/N"

    def objective(self) -> TrialObjective:
        return TrialObjective(
            self.base_overrides,
            self.specs,
            Objective(self.settings["metric"], self.settings.get("weights")),
            Path(self.output_dir) / "trials",
            self.tracker,
            self.first_trial,
            self.n_trials,
        )


def optimize(plan: SweepPlan, worker: int, n_trials: int) -> None:
    """One worker: load the study from storage and run its share of trials.

    Every trial draws with its own seed, mixed from ``sweep.sampler.seed`` and the trial's number
    (unique in the study), so workers -- here, in another command, on another machine -- never
    repeat each other's parameter sets.
    """
    settings = plan.settings
    study = optuna.load_study(
        study_name=str(settings["study_name"]),
        storage=build_storage(settings),
        sampler=build_sampler(settings["sampler"], plan.specs),
        pruner=build_pruner(settings["pruner"]),
    )
    timeout = settings.get("timeout")
    study.optimize(
        plan.objective(),
        n_trials=n_trials,
        timeout=float(timeout) if timeout else None,
        catch=(Exception,),
        gc_after_trial=True,
    )


def _sigterm_to_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt("SIGTERM")


def stop_on_sigterm() -> None:
    """A scheduler's SIGTERM must end the study like Ctrl-C (running trial FAIL, study consistent);
    Lightning's own SIGTERM handler only sets a flag but calls the handler installed before it."""
    signal.signal(signal.SIGTERM, _sigterm_to_interrupt)


def _worker_main(plan: SweepPlan, worker: int, n_trials: int, threads: int, cuda: str | None) -> None:
    if cuda is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = cuda  # before torch touches CUDA in this process
    set_torch_threads(threads)
    stop_on_sigterm()
    logging.basicConfig(level=logging.INFO, format=f"[worker {worker}] %(levelname)s %(name)s: %(message)s")
    try:
        optimize(plan, worker, n_trials)
    except KeyboardInterrupt:
        sys.exit(130)


def gpu_assignment(n_jobs: int, pin: bool) -> list[str | None]:
    """Worker i sees GPU i % n_gpus only (one trial per GPU); None leaves CUDA_VISIBLE_DEVICES alone."""
    if not pin:
        return [None] * n_jobs
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        gpus = [g for g in visible.split(",") if g.strip()]
    else:
        import torch

        gpus = [str(i) for i in range(torch.cuda.device_count())]
    if not gpus:
        return [None] * n_jobs
    return [gpus[i % len(gpus)] for i in range(n_jobs)]


def worker_threads(num_threads: int, n_jobs: int) -> int:
    """torch threads of each of ``n_jobs`` worker processes sharing ``runtime.num_threads`` (never oversubscribed)."""
    return max(1, num_threads // max(1, n_jobs))


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def run_workers(plan: SweepPlan, n_jobs: int, n_trials: int) -> None:
    context = multiprocessing.get_context("spawn")
    threads = worker_threads(plan.num_threads, n_jobs)
    gpus = gpu_assignment(n_jobs, bool(plan.settings.get("pin_gpus", True)))
    processes = []
    for worker, share in enumerate(split(n_trials, n_jobs)):
        if share == 0:
            continue
        process = context.Process(target=_worker_main, args=(plan, worker, share, threads, gpus[worker]))
        process.start()
        processes.append(process)
    try:
        for process in processes:
            process.join()
    except KeyboardInterrupt as stop:
        # Ctrl-C reaches the whole process group; a SIGTERM sent to this process only is passed on
        if stop.args == ("SIGTERM",):
            for process in processes:
                if process.is_alive():
                    os.kill(process.pid, signal.SIGTERM)
        for process in processes:
            process.join(timeout=60)
            if process.is_alive():
                process.terminate()
        raise
    failed = [p.exitcode for p in processes if p.exitcode not in (0, 130)]
    if failed:
        log.warning("%d worker(s) exited with errors (codes %s); see their logs above", len(failed), failed)


class SweepConfigError(ValueError):
    """The study's configuration is unusable; found before any trial runs (sweep.py exits with 2)."""


REQUIRED = ("study_name", "direction", "metric", "n_trials", "storage", "sampler", "pruner", "space")
MAPPINGS = ("sampler", "pruner", "space")


def check_settings(cfg: DictConfig, task_overrides: Sequence[str]) -> dict[str, Any]:
    """``sweep.*`` as a plain dict, with the errors a command line can make named by their key."""
    if "sweep" not in cfg or cfg.sweep is None:
        raise SweepConfigError("sweep is missing (removed with '~sweep'?): pick one, e.g. sweep=quickstart")
    for override in task_overrides:
        key, sep, value = override.lstrip("+").partition("=")
        if not sep or not key.startswith("sweep.") or "".join(value.split()) != "{}":
            continue
        current = OmegaConf.select(cfg, key, default=None)
        if isinstance(current, DictConfig) and len(current) > 0:
            names = ", ".join(str(k) for k in current)
            hint = "A study needs at least one parameter to search. " if key == "sweep.space" else ""
            raise SweepConfigError(
                f"{key}={{}} does not empty {key}: Hydra merges a mapping given on the command line into the "
                f"existing one, so {key} would keep {names}. {hint}Remove single entries with "
                f"'~{key}.NAME' (add new ones with '+{key}.NAME=...')"
            )
    settings = OmegaConf.to_container(cfg.sweep, resolve=True)
    for key in REQUIRED:
        if key not in settings:
            how = f"edit single entries ('~sweep.{key}.NAME' drops one)" if key in MAPPINGS else f"set sweep.{key}=..."
            raise SweepConfigError(
                f"sweep.{key} is missing (removed with '~sweep.{key}'?); every study needs it "
                f"(see conf/sweep/empdg.yaml): {how}"
            )
    return settings


def settings_problems(settings: Mapping[str, Any]) -> list[str]:
    """The study's own numbers and choices, each impossible one named (checked before the study is opened)."""
    found = []
    if settings["direction"] not in ("minimize", "maximize"):
        found.append(f"sweep.direction={settings['direction']!r}: use minimize or maximize")
    rules = (("n_trials", 0, "0 checks the configuration and runs nothing"), ("n_jobs", 1, "processes"),
             ("top_k", 1, "trials in the report"))  # fmt: skip
    for key, low, why in rules:
        found += whole_problems(f"sweep.{key}", settings.get(key, low), low, f" ({why})")
    for key, what in (("heartbeat_interval", "null turns heartbeats off"), ("grace_period", "null: Optuna's")):
        value = settings.get(key)
        if value is not None and (not is_whole(value) or value < 1):
            found.append(f"sweep.{key}={value!r} must be whole seconds >= 1 ({what})")
    timeout = settings.get("timeout")
    if timeout is not None and (not is_number(timeout) or timeout <= 0):
        found.append(f"sweep.timeout={timeout!r} must be seconds > 0, or null (no time limit)")
    sqlite_timeout = settings.get("sqlite_timeout", 60)
    if not is_number(sqlite_timeout) or sqlite_timeout <= 0:
        found.append(f"sweep.sqlite_timeout={sqlite_timeout!r} must be seconds > 0")
    seed = (settings.get("sampler") or {}).get("seed")
    if seed is not None and not is_whole(seed):
        found.append(f"sweep.sampler.seed={seed!r} must be a whole number, or null (unseeded)")
    return found


def prepare(cfg: DictConfig, task_overrides: Sequence[str], output_dir: Path) -> tuple[SweepPlan, DictConfig]:
    """Check everything before the study is touched: the space, and the base training config."""
    try:
        return _prepare(cfg, task_overrides, output_dir)
    except SweepConfigError:
        raise
    except ValueError as error:
        raise SweepConfigError(str(error)) from error


def _prepare(cfg: DictConfig, task_overrides: Sequence[str], output_dir: Path) -> tuple[SweepPlan, DictConfig]:
    settings = check_settings(cfg, task_overrides)
    problems = settings_problems(settings)
    if problems:
        raise SweepConfigError("; ".join(problems))
    minimum = settings.get("importance_min_trials", IMPORTANCE_MIN_TRIALS)
    if not is_whole(minimum) or minimum < 2:
        raise SweepConfigError(
            f"sweep.importance_min_trials={minimum}: use an integer >= 2 (parameter importances compare "
            "complete trials; a higher value waits for enough of them)"
        )
    specs = parse_space(settings["space"])
    build_pruner(settings["pruner"])
    build_sampler(settings["sampler"], specs)
    check_storage(settings)  # e.g. postgresql:// without a driver: named before the study is touched
    base_overrides = merge_overrides(settings.get("train_overrides") or [], forwarded_overrides(task_overrides))
    check_dir = format_value(str(output_dir / "trials" / "base"))
    base_cfg = compose("train", [*base_overrides, f"paths.output_dir={check_dir}"])
    validate_config(base_cfg)
    plan = SweepPlan(settings, specs, base_overrides, str(output_dir), None, num_threads_of(cfg))
    return plan, base_cfg


def run_sweep(cfg: DictConfig, task_overrides: Sequence[str], output_dir: Path) -> dict[str, Any]:
    """Run ``cfg.sweep``'s study (``sweep_root`` composed; ``task_overrides`` as given on the command line)."""
    plan, base_cfg = prepare(cfg, task_overrides, output_dir)
    settings = plan.settings
    study = open_study(
        settings,
        build_sampler(settings["sampler"], plan.specs),
        build_pruner(settings["pruner"]),
        build_storage(settings),
    )
    first_new = len(study.get_trials(deepcopy=False))
    objective = Objective(settings["metric"], settings.get("weights"))
    study.set_user_attr("objective", objective.name)
    plan.tracker = SweepTracker.from_config(base_cfg, study.study_name)
    if plan.tracker is not None:
        shown = {k: v for k, v in settings.items() if k != "space"}
        shown["space"] = {s.name: s.key for s in plan.specs}
        shown["train_overrides"] = plan.base_overrides
        try:
            parent = plan.tracker.start_parent(study.user_attrs.get("mlflow_parent_run_id"), shown)
            study.set_user_attr("mlflow_parent_run_id", parent)
        except Exception as error:  # tracking is never fatal: trials log to their own folders
            log.warning("could not open the study's MLflow parent run (%s); the sweep runs untracked", error)
            plan.tracker = None
    n_jobs, n_trials = int(settings.get("n_jobs", 1)), int(settings["n_trials"])
    plan.first_trial, plan.n_trials = first_new, n_trials
    print(
        f"study {study.study_name!r} at {masked(str(settings['storage']))}: {first_new} earlier trials; "
        f"{n_trials} new trials in {n_jobs} process(es); objective {objective.name} ({settings['direction']})"
    )
    status = "FINISHED"
    stop_on_sigterm()
    try:
        if n_jobs <= 1:
            optimize(plan, 0, n_trials)
        else:
            run_workers(plan, n_jobs, n_trials)
    except KeyboardInterrupt:
        status = "KILLED"
        print("\ninterrupted: the running trials were marked FAIL; re-run the same command to resume the study")
    study = optuna.load_study(study_name=study.study_name, storage=build_storage(settings))
    summary = finish(
        study,
        plan.specs,
        objective.name,
        output_dir,
        first_new,
        int(settings.get("top_k", 10)),
        plan.tracker,
        int(settings.get("importance_min_trials", IMPORTANCE_MIN_TRIALS)),
    )
    ended = sum(summary["new"][state] for state in ("COMPLETE", "PRUNED", "FAIL"))
    if status == "FINISHED" and ended > 0 and summary["new"]["FAIL"] == ended:
        status = "FAILED"
        print(
            f"\nsweep FAILED: every trial of this run failed ({ended} of {ended}; reasons above) -- "
            "sweep.py exits with status 1",
            file=sys.stderr,
        )
    if plan.tracker is not None:
        try:
            plan.tracker.end_parent(status)
        except Exception as error:  # tracking is never fatal
            log.warning("could not close the study's MLflow parent run: %s", error)
    summary["status"] = status
    return summary
