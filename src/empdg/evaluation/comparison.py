"""Compare finished runs of one MLflow experiment: a markdown table, a CSV and a bar chart.

Rows are runs, or groups of runs (``group_by``: ablation, model, a swept parameter) with mean ± std
over what differs inside a group (seeds). Sweep parents, earlier comparison runs and evaluation runs
linked to a training run are skipped, so the same experiment can hold trainings, sweeps, evaluations
and comparisons.

Columns are the validation ``metrics`` and the test metrics that ``empdg-evaluate`` logged back onto
each training run (``test/<metric>``, ``test_feedback/<metric>`` for ``compare.subset=feedback``).
When evaluation runs with a ``predictions.jsonl`` artifact exist, a second table gives each run's test
metrics with bootstrap confidence intervals over the test examples and, with ``compare.baseline``, the
paired difference to that run with its p-value (:mod:`empdg.evaluation.bootstrap`).

The command is ``empdg-compare`` (:mod:`empdg.commands.compare`); its settings are ``conf/compare.yaml``.
"""

from __future__ import annotations

import csv
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from empdg.config import CONFIG_DIR
from empdg.errors import ConfigError
from empdg.evaluation.bootstrap import BootstrapComparison, compare_prediction_files
from empdg.evaluation.run_link import EVAL_RUN_TAG, TRAIN_RUN_TAG, subset_metric_prefix
from empdg.tracking.mlflow_tracking import absolute_sqlite_uri

SKIPPED_ROLES = {"parent", "comparison"}
PREDICTIONS_ARTIFACT = "evaluation/predictions.jsonl"


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
        raise ConfigError(f"no MLflow experiment named {experiment!r} at {tracking_uri}")
    runs, token = [], None
    while True:
        page = client.search_runs([found.experiment_id], filter_string, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            break
    kept = [r for r in runs if r.data.tags.get("sweep.role") not in SKIPPED_ROLES]
    kept = [r for r in kept if r.data.tags.get("empdg.role") != "comparison"]
    kept = [r for r in kept if TRAIN_RUN_TAG not in r.data.tags]  # evaluations: reported on their training run
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


def default_stats_settings() -> dict[str, Any]:
    """The ``compare.*`` defaults: the ``compare`` section of ``conf/compare.yaml`` (their one home)."""
    return OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "compare.yaml").compare, resolve=True)


def stats_settings(cfg: DictConfig) -> dict[str, Any]:
    """``cfg.compare`` over :func:`default_stats_settings` (plain data; a config built by hand may lack it)."""
    defaults = default_stats_settings()
    given = cfg.get("compare")
    given = OmegaConf.to_container(given, resolve=True) if given is not None else {}
    settings = {**defaults, **given}
    settings["bootstrap"] = {**defaults["bootstrap"], **(given.get("bootstrap") or {})}
    return settings


def run_label(run: Any, group_by: str | None) -> str:
    """A run's name in the bootstrap table: ``name (id8)``, after its group's label when grouped."""
    own = f"{run.info.run_name} ({run.info.run_id[:8]})"
    return f"{group_value(run, group_by)} / {own}" if group_by else own


def evaluation_run(client: Any, run: Any, subset: str) -> Any | None:
    """The evaluation run holding ``run``'s test predictions for ``subset`` (newest first), or None.

    An evaluation run is its own source; a training run points at its latest evaluation with the tag
    ``empdg.eval_run.<subset>``, else its child evaluation runs are searched. For ``subset=feedback`` an
    evaluation of ``all`` also serves (its predictions carry the per-example feedback flag).
    """
    if run.data.tags.get("empdg.role") == "evaluation":
        return run
    subsets = [subset] if subset == "all" else [subset, "all"]
    for name in subsets:
        run_id = run.data.tags.get(f"{EVAL_RUN_TAG}.{name}")
        if run_id:
            try:
                return client.get_run(run_id)
            except Exception:  # deleted, or in another store: search below
                pass
    children = client.search_runs(
        [run.info.experiment_id],
        f"tags.`{TRAIN_RUN_TAG}` = '{run.info.run_id}'",
        max_results=100,
        order_by=["attributes.start_time DESC"],
    )
    children = [c for c in children if c.info.status == "FINISHED"]
    for name in subsets:
        for child in children:
            if child.data.tags.get("subset") == name:
                return child
    return None


def fetch_predictions(
    tracking_uri: str, runs: Sequence[Any], subset: str, group_by: str | None, folder: Path
) -> tuple[dict[str, Path], dict[str, Any]]:
    """Download each run's ``predictions.jsonl``: (label -> local file, label -> run) for the runs that have one."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    paths: dict[str, Path] = {}
    by_label: dict[str, Any] = {}
    for run in runs:
        source = evaluation_run(client, run, subset)
        if source is None:
            continue
        destination = folder / run.info.run_id
        destination.mkdir(parents=True, exist_ok=True)
        try:
            local = client.download_artifacts(source.info.run_id, PREDICTIONS_ARTIFACT, str(destination))
        except Exception as error:  # no such artifact (an evaluation without examples), unreachable store
            print(f"warning: no {PREDICTIONS_ARTIFACT} for run {run.info.run_id}: {type(error).__name__}: {error}")
            continue
        label = run_label(run, group_by)
        paths[label], by_label[label] = Path(local), run
    return paths, by_label


def resolve_baseline(baseline: str, by_label: Mapping[str, Any]) -> str:
    """The label of the run named by ``baseline``: a run id (or its start), a run name, or a table label."""
    if baseline in by_label:
        return baseline
    matches = [
        label
        for label, run in by_label.items()
        if run.info.run_id == baseline
        or (len(baseline) >= 6 and run.info.run_id.startswith(baseline))
        or run.info.run_name == baseline
        or label.split(" / ")[0] == baseline
    ]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ConfigError(
            f"compare.baseline={baseline!r} matches no run with test predictions; candidates: {sorted(by_label)}"
        )
    raise ConfigError(f"compare.baseline={baseline!r} is ambiguous: {sorted(matches)}; give a run id")


def bootstrap_table(
    uri: str, runs: Sequence[Any], settings: Mapping[str, Any], group_by: str | None, output_dir: Path
) -> BootstrapComparison | None:
    """Bootstrap intervals (and paired tests vs the baseline) over the runs' test predictions, or None.

    Systems appear in the order of ``runs``.
    """
    boot = settings["bootstrap"]
    baseline = settings.get("baseline")
    if int(boot["n"]) <= 0:
        if baseline:
            raise ConfigError("compare.baseline needs compare.bootstrap.n > 0")
        return None
    subset = str(settings["subset"])
    paths, by_label = fetch_predictions(uri, runs, subset, group_by, output_dir / "predictions")
    if not paths:
        if baseline:
            raise ConfigError(f"compare.baseline={baseline!r}: no run has test predictions (run empdg-evaluate first)")
        return None
    try:
        return compare_prediction_files(
            paths,
            baseline=resolve_baseline(str(baseline), by_label) if baseline else None,
            subset=subset,
            metrics=[str(m) for m in boot["metrics"]] if boot.get("metrics") else None,
            n_resamples=int(boot["n"]),
            seed=int(boot["seed"]),
            confidence=float(boot["confidence"]),
        )
    except ValueError as error:  # e.g. runs evaluated on different test sets: not comparable example by example
        if baseline:  # the comparison asked for cannot be made: the user's to fix
            raise ConfigError(str(error)) from error
        print(f"warning: no bootstrap table: {error} (narrow the runs with filter=...)")
        return None


def run_compare(cfg: DictConfig, output_dir: Path | None = None) -> list[Row]:
    """Search, tabulate, write ``comparison.{md,csv,png}`` to ``output_dir`` (and an MLflow run).

    With test predictions available, also ``comparison_test.{md,csv,json}``: the bootstrap table.
    ``output_dir`` defaults to ``cfg.paths.output_dir``.
    """
    if not cfg.get("experiment_name"):
        raise ConfigError("name the MLflow experiment to compare: experiment=NAME (train.py's experiment_name)")
    uri = absolute_sqlite_uri(str(cfg.tracking_uri))
    settings = stats_settings(cfg)
    metrics = [str(m) for m in cfg.metrics]
    test_columns = [f"{subset_metric_prefix(str(settings['subset']))}/{m}" for m in settings["test_metrics"]]
    group_by = str(cfg.group_by) if cfg.group_by else None
    runs = search_runs(uri, str(cfg.experiment_name), str(cfg.filter or ""), [str(s) for s in cfg.statuses])
    if not runs:
        raise ConfigError(
            f"no runs in experiment {cfg.experiment_name!r} match filter={cfg.filter!r} statuses={cfg.statuses}"
        )
    rows = build_rows(runs, list(dict.fromkeys(metrics + test_columns)), group_by, [str(o) for o in cfg.order])
    # test columns only when some run has been evaluated (logged test metrics)
    columns = metrics + [c for c in test_columns if c not in metrics and any(c in r.values for r in rows)]
    table = markdown(rows, columns, group_by)
    output_dir = Path(str(output_dir or cfg.paths.output_dir)).expanduser().resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    files = [output_dir / "comparison.md", output_dir / "comparison.csv", output_dir / "comparison.png"]
    by_id = {run.info.run_id: run for run in runs}
    in_table_order = [by_id[run_id] for row in rows for run_id in row.run_ids]
    comparison = bootstrap_table(uri, in_table_order, settings, group_by, output_dir)
    text = f"# {cfg.experiment_name}: {len(runs)} runs\n\n{table}\n"
    if comparison is not None:
        text += f"\n## Test set, {100 * comparison.confidence:g}% bootstrap intervals\n\n{comparison.markdown()}"
        extra = [output_dir / f"comparison_test.{ext}" for ext in ("md", "csv", "json")]
        extra[0].write_text(comparison.markdown(), encoding="utf-8")
        comparison.write_csv(extra[1])
        extra[2].write_text(comparison.to_json() + "\n", encoding="utf-8")
        files += extra
    files[0].write_text(text, encoding="utf-8")
    write_csv(rows, columns, files[1])
    bar_chart(rows, columns, files[2], f"{cfg.experiment_name} ({len(runs)} runs)")
    shown = table if comparison is None else f"{table}\n\n{comparison.markdown()}"
    print(f"\n{cfg.experiment_name}: {len(runs)} runs\n\n{shown}\n\nwritten: {', '.join(str(f) for f in files)}")
    if cfg.log_run:
        run_id = log_comparison(uri, str(cfg.experiment_name), group_by, files)
        print(f"MLflow comparison run {run_id} (tag empdg.role=comparison) at {uri}")
    return rows
