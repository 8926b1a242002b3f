"""The closing summary: counts, best trial, top-k table, best config files and Optuna's plots.

The best configuration is written as Hydra overrides so it can be re-run with train.py as is;
the files also go to the parent MLflow run so the study is self-contained in the tracking store.
"""

from __future__ import annotations

import logging
import shlex
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from empdg.sweep.space import ParamSpec, override_key
from empdg.sweep.tracking import SweepTracker

log = logging.getLogger(__name__)


def count_states(trials: Sequence[FrozenTrial]) -> dict[str, int]:
    counts = Counter(t.state.name for t in trials)
    return {name: counts.get(name, 0) for name in ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")}


def ranked(study: optuna.Study) -> list[FrozenTrial]:
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    return sorted(done, key=lambda t: t.value, reverse=study.direction == optuna.study.StudyDirection.MAXIMIZE)


def top_k_table(trials: Sequence[FrozenTrial], specs: Sequence[ParamSpec], objective_name: str, k: int) -> str:
    header = ["rank", "trial", objective_name, "steps", *[s.name for s in specs]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for rank, trial in enumerate(trials[:k], start=1):
        params = [_short(trial.params.get(s.name, "-")) for s in specs]
        row = [
            str(rank),
            str(trial.number),
            f"{trial.value:.6g}",
            str(trial.user_attrs.get("train_steps", "-")),
            *params,
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def best_overrides(trial: FrozenTrial, storage: str = "the sweep storage") -> list[str]:
    """The trial's overrides minus its run folder: what train.py needs to reproduce it.

    They are read back from the study's storage (a file anyone may have handed over): checked to be a list
    of strings through the shared file validation, an :class:`InvalidFileError` naming ``storage`` otherwise.
    """
    from empdg.data.file_schema import validate

    overrides = validate(trial.user_attrs.get("overrides", []), list[str], path=storage,
                         where=f"trial {trial.number} user_attrs.overrides")  # fmt: skip
    return [o for o in overrides if override_key(o) != "paths.output_dir"]


def rerun_command(overrides: Sequence[str]) -> str:
    """``python train.py ...`` with each override shell-quoted: pasted into a shell, every value stays whole."""
    return "python train.py " + " ".join(shlex.quote(o) for o in overrides)


def write_best(
    study: optuna.Study, best: FrozenTrial, objective_name: str, out: Path, storage: str = "the sweep storage"
) -> list[Path]:
    """``best_overrides.txt`` (one override a line, as ``train.py overrides_file=PATH`` reads them: no shell
    splitting or expansion) and ``best_trial.yaml`` (the trial, its overrides and the shell-quoted command)."""
    overrides = best_overrides(best, storage)
    if any("\n" in o or "\r" in o for o in overrides):  # one override a line: a line break would split one
        from empdg.errors import ConfigError

        raise ConfigError(f"trial {best.number}: an override holds a line break, which best_overrides.txt cannot")
    command = rerun_command(overrides)
    text_file = out / "best_overrides.txt"
    text_file.write_text("\n".join(overrides) + "\n", encoding="utf-8")
    yaml_file = out / "best_trial.yaml"
    document = {
        "study": study.study_name,
        "trial": best.number,
        "objective": objective_name,
        "value": float(best.value),
        "params": dict(best.params),
        "overrides": overrides,
        "command": command,
    }
    yaml_file.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return [text_file, yaml_file]


#: parameter importances rest on complete trials: below this many (``sweep.importance_min_trials``) they are noise
IMPORTANCE_MIN_TRIALS = 5


def history_points(study: optuna.Study) -> dict[str, list]:
    """What the history plot shows: complete trials (number, value), the best so far after each, and pruned
    trials at their last reported value (a value mid-training, not a final one); failed trials by number."""
    complete, pruned, failed, best = [], [], [], []
    better = max if study.direction == optuna.study.StudyDirection.MAXIMIZE else min
    for trial in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        if trial.state == TrialState.COMPLETE and trial.value is not None:
            complete.append((trial.number, float(trial.value)))
            best.append((trial.number, better(float(trial.value), best[-1][1]) if best else float(trial.value)))
        elif trial.state == TrialState.PRUNED and trial.intermediate_values:
            last = max(trial.intermediate_values)
            pruned.append((trial.number, float(trial.intermediate_values[last])))
        elif trial.state in (TrialState.FAIL, TrialState.PRUNED):  # a pruned trial without a report: no height
            failed.append(trial.number)
    return {"complete": complete, "best": best, "pruned": pruned, "failed": failed}


def plot_history(study: optuna.Study, objective_name: str):
    """The optimisation history: whole trial numbers on x, complete trials, the best so far, pruned trials marked."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    points = history_points(study)
    figure, axis = plt.subplots(figsize=(9, 5))
    if points["complete"]:
        axis.plot(*zip(*points["complete"]), "o", color="tab:blue", label="complete")
        axis.step(*zip(*points["best"]), where="post", color="tab:red", label="best so far")
    if points["pruned"]:
        axis.plot(*zip(*points["pruned"]), "x", color="tab:orange", markersize=8,
                  label="pruned (last reported value)")  # fmt: skip
    for number in points["failed"]:
        axis.axvline(number, color="grey", alpha=0.3, linewidth=1)
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # trials are whole numbers
    axis.set_xlabel("trial")
    axis.set_ylabel(objective_name)
    counts = f"{len(points['complete'])} complete, {len(points['pruned'])} pruned"
    if points["failed"]:
        counts += f", {len(points['failed'])} failed or unreported (grey lines)"
    axis.set_title(f"optimisation history of {study.study_name!r}: {counts}")
    if points["complete"] or points["pruned"]:
        axis.legend()
    figure.tight_layout()
    return figure


def plot_importances(study: optuna.Study, min_trials: int = IMPORTANCE_MIN_TRIALS):
    """Optuna's importances, titled with the number of complete trials they rest on; None below ``min_trials``."""
    from optuna.visualization import matplotlib as ovm

    completed = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    if completed < min_trials:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        axes = ovm.plot_param_importances(study)
    axes.set_title(f"parameter importances from {completed} complete trials (fANOVA; few trials give rough ranks)")
    figure = axes.figure
    figure.set_size_inches(9, 5)
    figure.tight_layout()
    return figure


def write_plots(
    study: optuna.Study,
    out: Path,
    objective_name: str = "objective",
    importance_min_trials: int = IMPORTANCE_MIN_TRIALS,
) -> list[Path]:
    """The optimisation history always; parameter importances from ``importance_min_trials`` complete trials on."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    completed = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    plots = [("optimization_history.png", lambda: plot_history(study, objective_name))]
    if completed >= importance_min_trials:
        plots.append(("param_importances.png", lambda: plot_importances(study, importance_min_trials)))
    else:
        print(
            f"parameter importances need >= {importance_min_trials} complete trials (sweep.importance_min_trials; "
            f"have {completed}): not plotted"
        )
    for name, plot in plots:
        try:
            figure = plot()
            figure.savefig(out / name, dpi=100)
            plt.close(figure)
            written.append(out / name)
        except Exception as error:  # e.g. importances over a dynamic space: report, keep going
            print(f"could not plot {name}: {type(error).__name__}: {error}")
    return written


def finish(
    study: optuna.Study,
    specs: Sequence[ParamSpec],
    objective_name: str,
    out: Path,
    first_new_trial: int,
    top_k: int,
    tracker: SweepTracker | None,
    importance_min_trials: int = IMPORTANCE_MIN_TRIALS,
) -> dict[str, Any]:
    """Print and write the summary; return the counts and the best value (for tests and sweep.py)."""
    out.mkdir(parents=True, exist_ok=True)
    trials = study.get_trials(deepcopy=False)
    counts = count_states(trials)
    new = count_states([t for t in trials if t.number >= first_new_trial])
    print(f"\n=== study {study.study_name!r}: {len(trials)} trials ({len(trials) - first_new_trial} in this run) ===")
    print("study:    " + ", ".join(f"{k.lower()}={v}" for k, v in counts.items() if v or k != "WAITING"))
    print("this run: " + ", ".join(f"{k.lower()}={v}" for k, v in new.items() if v or k != "WAITING"))
    for trial in trials:
        if trial.number >= first_new_trial and trial.state == TrialState.FAIL:
            print(f"  trial {trial.number} failed: {trial.user_attrs.get('fail_reason', 'unknown')}")
    files: list[Path] = []
    best_trials = ranked(study)
    summary: dict[str, Any] = {"counts": counts, "new": new, "best_value": None, "best_trial": None}
    if best_trials:
        best = best_trials[0]
        summary.update(best_value=float(best.value), best_trial=best.number)
        print(f"best trial {best.number}: {objective_name}={best.value:.6g}")
        for name, value in best.params.items():
            print(f"  {name} = {value}")
        table = top_k_table(best_trials, specs, objective_name, top_k)
        print(f"\ntop {min(top_k, len(best_trials))}:\n{table}")
        (out / "top_trials.md").write_text(table + "\n", encoding="utf-8")
        files += [out / "top_trials.md", *write_best(study, best, objective_name, out)]
        # what was just written, not read back from the file (nothing needs to parse it again)
        overrides_file = shlex.quote(f"overrides_file={out / 'best_overrides.txt'}")
        print(f"\nre-run the best configuration: python train.py {overrides_file}")
        print(f"  (or: {rerun_command(best_overrides(best))})")
    else:
        print("no completed trial: no best configuration")
    files += write_plots(study, out, objective_name, importance_min_trials)
    print(f"sweep files: {out}")
    if tracker is not None and tracker.parent_run_id:
        log_parent(tracker, summary, best_trials[0] if best_trials else None, counts, files)
    return summary


def log_parent(
    tracker: SweepTracker, summary: dict[str, Any], best: FrozenTrial | None, counts: dict[str, int], files: list[Path]
) -> None:
    try:
        client = tracker.client
        run_id = tracker.parent_run_id
        for state, count in counts.items():
            client.log_metric(run_id, f"trials/{state.lower()}", count)
        if best is not None:
            client.log_metric(run_id, "best/value", float(best.value))
            client.set_tag(run_id, "best.trial", str(best.number))
            client.set_tag(run_id, "best.run_id", str(best.user_attrs.get("mlflow_run_id", "")))
            logged = client.get_run(run_id).data.params
            for name, value in best.params.items():
                client.set_tag(run_id, f"best.{name}", str(value))  # tags: the latest best of a resumed study
                if f"best.{name}" not in logged:  # params are immutable in MLflow: first best only
                    client.log_param(run_id, f"best.{name}", str(value))
        for path in files:
            client.log_artifact(run_id, str(path), "sweep")
        print(f"MLflow parent run {run_id} at {tracker.tracking_uri}")
    except Exception as error:  # tracking is never fatal
        log.warning("could not log the sweep summary to MLflow: %s", error)
