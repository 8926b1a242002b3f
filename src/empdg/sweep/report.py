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


def best_overrides(trial: FrozenTrial) -> list[str]:
    """The trial's overrides minus its run folder: what train.py needs to reproduce it."""
    return [o for o in trial.user_attrs.get("overrides", []) if override_key(o) != "paths.output_dir"]


def write_best(study: optuna.Study, best: FrozenTrial, objective_name: str, out: Path) -> list[Path]:
    overrides = best_overrides(best)
    command = "python train.py " + " ".join(shlex.quote(o) for o in overrides)
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


def write_plots(study: optuna.Study, out: Path) -> list[Path]:
    """Optimisation history always; parameter importances only with >= 2 completed trials."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    written = []
    completed = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    plots = [("optimization_history.png", ovm.plot_optimization_history)]
    if completed >= 2:
        plots.append(("param_importances.png", ovm.plot_param_importances))
    else:
        print(f"parameter importances need >= 2 completed trials (have {completed}): not plotted")
    for name, plot in plots:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                axes = plot(study)
            figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
            figure.set_size_inches(9, 5)
            figure.tight_layout()
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
        print(f"\nre-run the best configuration: {yaml.safe_load((out / 'best_trial.yaml').read_text())['command']}")
    else:
        print("no completed trial: no best configuration")
    files += write_plots(study, out)
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
