"""Compare finished runs of one MLflow experiment: a markdown table, a CSV and a bar chart.

Rows are runs, or groups of runs (``group_by``: ablation, model, a swept parameter) with mean ± std
over what differs inside a group (seeds). Sweep parents and earlier comparison runs are skipped,
so the same experiment can hold trainings, sweeps and comparisons.
"""

from __future__ import annotations

import csv
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from empdg.tracking.mlflow_tracking import absolute_sqlite_uri

SKIPPED_ROLES = {"parent", "comparison"}


@dataclass
class Row:
    """One table row: a run (n=1) or a group; ``values[metric]`` holds every run's value."""

    label: str
    run_ids: list[str] = field(default_factory=list)
    values: dict[str, list[float]] = field(default_factory=dict)

    def mean_std(self, metric: str) -> tuple[float, float] | None:
        data = self.values.get(metric) or []
        if not data:
            return None
        return statistics.fmean(data), statistics.stdev(data) if len(data) > 1 else 0.0

    def cell(self, metric: str) -> str:
        stats = self.mean_std(metric)
        if stats is None:
            return "–"
        mean, std = stats
        return f"{mean:.4f}" if len(self.values[metric]) == 1 else f"{mean:.4f} ± {std:.4f}"


def search_runs(tracking_uri: str, experiment: str, filter_string: str, statuses: Sequence[str]) -> list[Any]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise ValueError(f"no MLflow experiment named {experiment!r} at {tracking_uri}")
    runs, token = [], None
    while True:
        page = client.search_runs([found.experiment_id], filter_string, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            break
    kept = [r for r in runs if r.data.tags.get("sweep.role") not in SKIPPED_ROLES]
    kept = [r for r in kept if r.data.tags.get("empdg.role") != "comparison"]
    return [r for r in kept if not statuses or r.info.status in statuses]


def group_value(run: Any, key: str) -> str:
    """``run_name``, ``params.X``, ``tags.X``, or a bare name looked up in tags then params."""
    if key == "run_name":
        return str(run.info.run_name)
    if key.startswith("params."):
        return str(run.data.params.get(key[len("params.") :], "-"))
    if key.startswith("tags."):
        return str(run.data.tags.get(key[len("tags.") :], "-"))
    return str(run.data.tags.get(key, run.data.params.get(key, "-")))


def build_rows(
    runs: Iterable[Any], metrics: Sequence[str], group_by: str | None, order: Sequence[str] = ()
) -> list[Row]:
    rows: dict[str, Row] = {}
    for run in runs:
        label = group_value(run, group_by) if group_by else f"{run.info.run_name} ({run.info.run_id[:8]})"
        row = rows.setdefault(label, Row(label))
        row.run_ids.append(run.info.run_id)
        for metric in metrics:
            value = run.data.metrics.get(metric)
            if value is not None and math.isfinite(value):
                row.values.setdefault(metric, []).append(float(value))
    first = [rows[name] for name in order if name in rows]
    rest = sorted((r for name, r in rows.items() if name not in order), key=lambda r: _natural(r.label))
    return first + rest


def _natural(label: str) -> tuple:
    try:
        return (0, float(label), "")
    except ValueError:
        return (1, 0.0, label)


def markdown(rows: Sequence[Row], metrics: Sequence[str], group_by: str | None) -> str:
    header = [group_by or "run", "n", *metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join([row.label, str(len(row.run_ids)), *[row.cell(m) for m in metrics]]) + " |")
    return "\n".join(lines)


def write_csv(rows: Sequence[Row], metrics: Sequence[str], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["label", "n", *[f"{m}_{s}" for m in metrics for s in ("mean", "std")]])
        for row in rows:
            cells: list[Any] = [row.label, len(row.run_ids)]
            for metric in metrics:
                stats = row.mean_std(metric)
                cells += list(stats) if stats else ["", ""]
            writer.writerow(cells)


def bar_chart(rows: Sequence[Row], metrics: Sequence[str], path: Path, title: str) -> None:
    """One panel per metric: metrics have different scales (perplexity vs accuracy)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(metrics), figsize=(max(5, 1.2 * len(rows)) * len(metrics), 4.5), squeeze=False)
    for axis, metric in zip(axes[0], metrics):
        stats = [row.mean_std(metric) or (math.nan, 0.0) for row in rows]
        positions = range(len(rows))
        axis.bar(positions, [s[0] for s in stats], yerr=[s[1] for s in stats], capsize=4, color="tab:blue")
        axis.set_xticks(list(positions), [row.label for row in rows], rotation=30, ha="right")
        axis.set_title(metric)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def log_comparison(tracking_uri: str, experiment: str, group_by: str | None, files: Sequence[Path]) -> str:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    tags = {"empdg.role": "comparison", "compare.group_by": str(group_by), "experiment": experiment}
    run = client.create_run(experiment_id, run_name=f"compare-{group_by or 'runs'}", tags=tags)
    for path in files:
        client.log_artifact(run.info.run_id, str(path), "comparison")
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def run_compare(cfg: DictConfig, output_dir: Path) -> list[Row]:
    """Search, tabulate, write ``comparison.{md,csv,png}`` to ``output_dir`` (and an MLflow run)."""
    uri = absolute_sqlite_uri(str(cfg.tracking_uri))
    metrics = [str(m) for m in cfg.metrics]
    group_by = str(cfg.group_by) if cfg.group_by else None
    runs = search_runs(uri, str(cfg.experiment_name), str(cfg.filter or ""), [str(s) for s in cfg.statuses])
    if not runs:
        raise ValueError(
            f"no runs in experiment {cfg.experiment_name!r} match filter={cfg.filter!r} statuses={cfg.statuses}"
        )
    rows = build_rows(runs, metrics, group_by, [str(o) for o in cfg.order])
    table = markdown(rows, metrics, group_by)
    output_dir.mkdir(parents=True, exist_ok=True)
    files = [output_dir / "comparison.md", output_dir / "comparison.csv", output_dir / "comparison.png"]
    files[0].write_text(f"# {cfg.experiment_name}: {len(runs)} runs\n\n{table}\n", encoding="utf-8")
    write_csv(rows, metrics, files[1])
    bar_chart(rows, metrics, files[2], f"{cfg.experiment_name} ({len(runs)} runs)")
    print(f"\n{cfg.experiment_name}: {len(runs)} runs\n\n{table}\n\nwritten: {', '.join(str(f) for f in files)}")
    if cfg.log_run:
        run_id = log_comparison(uri, str(cfg.experiment_name), group_by, files)
        print(f"MLflow comparison run {run_id} (tag empdg.role=comparison) at {uri}")
    return rows
