"""Compare finished runs of one MLflow experiment: a markdown table, a CSV, a bar chart and learning curves.

Rows are runs, or groups of runs (``group_by``: ablation, model, a swept parameter) with mean ± std
over what differs inside a group (seeds). Sweep parents, earlier comparison runs and evaluation runs
linked to a training run are skipped, so the same experiment can hold trainings, sweeps, evaluations
and comparisons; sweep trials (short budgets) are left out unless ``compare.include_sweep_trials``.
Each row shows its runs' update budget (``updates``), so runs of different lengths are not compared unawares.

Columns are the validation ``metrics`` and the test metrics that ``empdg-evaluate`` logged back onto
each training run (``test/<metric>``, ``test_feedback/<metric>`` for ``compare.subset=feedback``).
When evaluation runs with a ``predictions.jsonl`` artifact exist, a second table gives each run's test
metrics with bootstrap confidence intervals over the test examples and, with ``compare.baseline``, the
paired difference to that run with its p-value (:mod:`empdg.evaluation.bootstrap`).

The bar chart (``comparison.png``) has one panel per column in a grid of at most three columns; on the
test metrics it draws each run's bootstrap interval (the values of ``comparison_test.csv``), elsewhere the
std over a group's runs. ``learning_curves.png`` plots the validation ``metrics`` against the global step
from each run's MLflow metric history, one line per run, coloured like its row in the bar chart.

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
from empdg.config.migration import migrate_flat_params
from empdg.config.schema import PHASES, AdversarialConfig
from empdg.errors import ConfigError, UserError, is_number, is_whole, whole_problems
from empdg.evaluation.bootstrap import BootstrapComparison, Estimate, compare_prediction_files
from empdg.evaluation.run_link import EVAL_RUN_TAG, TRAIN_RUN_TAG, subset_metric_prefix
from empdg.tracking.store import absolute_sqlite_uri

SKIPPED_ROLES = {"parent", "comparison"}
#: ``sweep.role`` of a study's trial runs (set by empdg.sweep.tracking, a layer above this one)
SWEEP_TRIAL_ROLE = "trial"
PREDICTIONS_ARTIFACT = "evaluation/predictions.jsonl"
#: metrics whose values are counts (the name after the last ``/``): printed as integers
COUNT_METRICS = {"unique_replies", "n_examples"}
GRID_COLUMNS = 3  # panels per row of the figures: 9 metrics in one row were unreadable


def is_count(metric: str) -> bool:
    return metric.rsplit("/", 1)[-1] in COUNT_METRICS


def format_value(value: float, metric: str, digits: int = 4) -> str:
    """A table cell's number: a count as an integer when it is one (``61``, not ``61.0000``)."""
    if is_count(metric) and math.isfinite(value):
        return str(int(value)) if float(value).is_integer() else f"{value:.1f}"
    return f"{value:.{digits}f}"


def csv_value(value: float, metric: str) -> float | int:
    """A CSV number: an integral count as an int (``61``, not ``61.0``), anything else unchanged."""
    return int(value) if is_count(metric) and math.isfinite(value) and float(value).is_integer() else value


@dataclass
class Row:
    """One table row: a run (n=1) or a group; ``values[metric]`` holds every run's value."""

    label: str
    run_ids: list[str] = field(default_factory=list)
    values: dict[str, list[float]] = field(default_factory=dict)
    budgets: list[int | None] = field(default_factory=list)  # each run's update budget (None: unknown)

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
        if len(self.values[metric]) == 1:
            return format_value(mean, metric)
        return f"{format_value(mean, metric)} ± {std:.1f}" if is_count(metric) else f"{mean:.4f} ± {std:.4f}"

    def budget_cell(self) -> str:
        """The update budgets of the row's runs: ``500``, or ``60/500`` when they differ; ``–`` when unknown."""
        known = sorted({b for b in self.budgets if b is not None})
        return "/".join(str(b) for b in known) if known else "–"


def update_budget(run: Any) -> int | None:
    """A training run's configured budget in updates, from its logged config (None without it).

    Counted as the training progress line counts it (empdg.training.progress): the
    phases that run (the critic phases only with a critic) and an adversarial cycle as
    ``n_critic + g_steps`` updates.
    """
    try:
        params = migrate_flat_params(run.data.params)  # a run logged with older keys: today's
    except UserError:  # a setting that cannot be expressed today: its budget is unknown
        return None

    def param(key: str, default: Any) -> str:
        return str(params.get(key, default))

    try:
        budgets = {name: int(params[f"training.phases.{name}"]) for name in PHASES}
        cycle = int(param("adversarial.n_critic", AdversarialConfig.n_critic))
        cycle += int(param("adversarial.g_steps", AdversarialConfig.g_steps))
    except (KeyError, ValueError):
        return None
    critics = params.get("adversarial.critics", AdversarialConfig().critics)  # logged as text: "['semantic']"
    if not critics or str(critics).replace(" ", "") == "[]":
        return budgets["generator_pretrain"]
    return budgets["generator_pretrain"] + budgets["critic_pretrain"] + budgets["adversarial"] * max(cycle, 1)


def is_sweep_trial(run: Any) -> bool:
    return run.data.tags.get("sweep.role") == SWEEP_TRIAL_ROLE


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
    kept = [r for r in kept if r.data.tags.get("empdg.role") not in ("comparison", "human_evaluation")]
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
        row.budgets.append(update_budget(run))
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


def has_budgets(rows: Sequence[Row]) -> bool:
    """Whether the ``updates`` column is shown: some run logged its training config."""
    return any(b is not None for row in rows for b in row.budgets)


def markdown(rows: Sequence[Row], metrics: Sequence[str], group_by: str | None) -> str:
    budget = has_budgets(rows)
    header = [group_by or "run", "n", *(["updates"] if budget else []), *metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row.label, str(len(row.run_ids)), *([row.budget_cell()] if budget else [])]
        lines.append("| " + " | ".join([*cells, *[row.cell(m) for m in metrics]]) + " |")
    return "\n".join(lines)


def write_csv(rows: Sequence[Row], metrics: Sequence[str], path: Path) -> None:
    budget = has_budgets(rows)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        header = ["label", "n", *(["updates"] if budget else [])]
        writer.writerow([*header, *[f"{m}_{s}" for m in metrics for s in ("mean", "std")]])
        for row in rows:
            cells: list[Any] = [row.label, len(row.run_ids), *([row.budget_cell()] if budget else [])]
            for metric in metrics:
                stats = row.mean_std(metric)
                cells += [csv_value(stats[0], metric), csv_value(stats[1], metric)] if stats else ["", ""]
            writer.writerow(cells)


def grid_shape(n_panels: int, columns: int = GRID_COLUMNS) -> tuple[int, int]:
    """(rows, columns) of a grid holding ``n_panels``: at most ``columns`` a row."""
    ncols = max(1, min(columns, n_panels))
    return math.ceil(n_panels / ncols), ncols


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def row_colors(rows: Sequence[Row]) -> dict[str, Any]:
    """One colour per row, shared by the bar chart and the learning curves."""
    from matplotlib import colormaps

    palette = colormaps["tab10" if len(rows) <= 10 else "tab20"].colors
    return {row.label: palette[i % len(palette)] for i, row in enumerate(rows)}


def _grid(plt: Any, n_panels: int, panel: tuple[float, float], extra_height: float) -> tuple[Any, list[Any]]:
    nrows, ncols = grid_shape(n_panels)
    figure, axes = plt.subplots(
        nrows, ncols, figsize=(panel[0] * ncols, panel[1] * nrows + extra_height), squeeze=False
    )
    flat = list(axes.flat)
    for axis in flat[n_panels:]:  # the empty cells of the last grid row
        figure.delaxes(axis)
    return figure, flat[:n_panels]


def comparison_figure(
    rows: Sequence[Row],
    metrics: Sequence[str],
    title: str,
    intervals: Mapping[str, Mapping[str, Estimate]] | None = None,
    test_prefix: str = "test",
    confidence: float = 0.95,
) -> Any:
    """The bar chart: one panel per metric (their scales differ: perplexity vs accuracy) in a grid.

    A bar is a row's value (the mean over a group's runs). On a test metric ``<test_prefix>/<m>`` each
    run with a bootstrap estimate of ``m`` in ``intervals`` (run id -> metric -> Estimate) gets a point
    with its interval (gid ``bootstrap``); elsewhere a group of several runs gets ± its std (gid ``std``).
    """
    plt = _pyplot()
    intervals = intervals or {}
    longest = max((len(row.label) for row in rows), default=1)
    panel = (min(max(3.4, 1.4 + 0.45 * len(rows)), 6.0), 2.4 + min(0.06 * longest, 1.8))
    figure, axes = _grid(plt, len(metrics), panel, extra_height=0.8)
    colors = row_colors(rows)
    drawn: set[str] = set()
    for axis, metric in zip(axes, metrics):
        base = metric[len(test_prefix) + 1 :] if metric.startswith(f"{test_prefix}/") else None
        for x, row in enumerate(rows):
            estimates = [intervals[r][base] for r in row.run_ids if base and base in intervals.get(r, {})]
            stats = row.mean_std(metric)
            value = stats[0] if stats else statistics.fmean(e.value for e in estimates) if estimates else math.nan
            axis.bar(x, value, width=0.7, color=colors[row.label], alpha=0.5 if estimates else 0.85)
            if estimates:
                # the runs of a group side by side inside their bar
                offsets = [0.0] if len(estimates) == 1 else [-0.25 + 0.5 * i / (len(estimates) - 1) for i in
                                                            range(len(estimates))]  # fmt: skip
                for offset, estimate in zip(offsets, estimates):
                    if not (math.isfinite(estimate.low) and math.isfinite(estimate.high)):
                        continue
                    # lines, not errorbar(): a re-centred percentile interval need not contain the value
                    where = x + offset
                    axis.vlines([where], [estimate.low], [estimate.high], color="black", linewidth=1, gid="bootstrap")
                    axis.hlines([estimate.low, estimate.high], where - 0.06, where + 0.06, color="black", linewidth=1)
                    axis.plot([where], [estimate.value], "o", color="black", markersize=3)
                    drawn.add("bootstrap")
            elif stats and len(row.values[metric]) > 1:
                bars = axis.errorbar([x], [stats[0]], yerr=[stats[1]], fmt="none", color="dimgray", capsize=4)
                bars.lines[2][0].set_gid("std")
                drawn.add("std")
        axis.set_xticks(range(len(rows)), [row.label for row in rows], rotation=30, ha="right", fontsize=8)
        axis.set_title(metric, fontsize=10)
        axis.tick_params(axis="y", labelsize=8)
        axis.grid(axis="y", alpha=0.3)
    notes = ["bars: value (mean over a group's runs)"]
    if "bootstrap" in drawn:
        notes.append(f"black: each run's {100 * confidence:g}% bootstrap interval over test examples")
    if "std" in drawn:
        notes.append("grey: ± std over a group's runs")
    figure.suptitle(title)
    figure.text(0.5, 0.01, "; ".join(notes), ha="center", va="bottom", fontsize=8)
    figure.tight_layout(rect=(0, 0.04, 1, 1))
    return figure


def metric_histories(
    tracking_uri: str, run_ids: Iterable[str], metrics: Sequence[str]
) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """run id -> metric -> [(step, value)] by step: the last value logged at a step (a resumed run
    may log a step twice), non-finite values dropped."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    histories: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for run_id in run_ids:
        for metric in metrics:
            points: dict[int, tuple[int, float]] = {}
            for entry in client.get_metric_history(run_id, metric):
                known = points.get(entry.step)
                if math.isfinite(entry.value) and (known is None or entry.timestamp >= known[0]):
                    points[entry.step] = (entry.timestamp, float(entry.value))
            histories.setdefault(run_id, {})[metric] = [(step, points[step][1]) for step in sorted(points)]
    return histories


def _sparse_log_label(value: float, _: Any = None) -> str:
    """Minor tick labels of a log axis at 2, 3 and 5 times a power of ten only (all nine crowd)."""
    if value <= 0:
        return ""
    lead = round(value / 10 ** math.floor(math.log10(value)), 6)
    return f"{value:g}" if lead in (2, 3, 5) else ""


def learning_curves_figure(
    rows: Sequence[Row], histories: Mapping[str, Mapping[str, Sequence[tuple[int, float]]]], metrics: Sequence[str],
    title: str,
) -> Any | None:  # fmt: skip
    """One panel per metric with a history, one line per run (gid: its run id) in its row's colour; None
    when no run has a history of any of ``metrics``."""
    panels = [m for m in metrics if any(histories.get(r, {}).get(m) for row in rows for r in row.run_ids)]
    if not panels:
        return None
    plt = _pyplot()
    from matplotlib.ticker import FuncFormatter

    legend_rows = math.ceil(len(rows) / 3)
    figure, axes = _grid(plt, len(panels), (4.6, 3.2), extra_height=0.2 + 0.22 * legend_rows)
    colors = row_colors(rows)
    handles: dict[str, Any] = {}
    for axis, metric in zip(axes, panels):
        for row in rows:
            for run_id in row.run_ids:
                points = histories.get(run_id, {}).get(metric)
                if not points:
                    continue
                steps, values = zip(*points)
                (line,) = axis.plot(steps, values, color=colors[row.label], linewidth=1.2, alpha=0.9,
                                    marker="o" if len(points) <= 30 else None, markersize=3)  # fmt: skip
                line.set_gid(run_id)
                handles.setdefault(row.label, line)
        if metric.endswith("ppl") and all(v > 0 for line in axis.get_lines() for v in line.get_ydata()):
            axis.set_yscale("log")  # perplexity falls by orders of magnitude early on
            axis.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))  # 100, not 10^2
            axis.yaxis.set_minor_formatter(FuncFormatter(_sparse_log_label))
        axis.set_title(metric, fontsize=10)
        axis.set_xlabel("global step", fontsize=8)
        axis.tick_params(labelsize=8)
        axis.grid(alpha=0.3)
    figure.suptitle(title)
    bottom = (0.1 + 0.22 * legend_rows) / figure.get_size_inches()[1]
    figure.legend(list(handles.values()), list(handles), loc="lower center", ncol=min(3, len(handles)), fontsize=8,
                  frameon=False)  # fmt: skip
    figure.tight_layout(rect=(0, bottom, 1, 1))
    return figure


def save_figure(figure: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

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


def settings_problems(settings: dict[str, Any]) -> list[str]:
    """Each impossible ``compare.*`` setting, named (before any run is searched or file written)."""
    from empdg.data.corpus_metrics import metric_keys
    from empdg.evaluation.scored_examples import SUBSETS

    found = []
    if settings["subset"] not in SUBSETS:
        found.append(f"compare.subset={settings['subset']!r}: choose one of {', '.join(SUBSETS)}")
    if not isinstance(settings["include_sweep_trials"], bool):  # "no" or "0" would be taken as true
        found.append(f"compare.include_sweep_trials={settings['include_sweep_trials']!r}: give true or false")
    boot = settings["bootstrap"]
    found += whole_problems("compare.bootstrap.n", boot["n"], 0, " (0: no bootstrap table)")
    if not is_whole(boot["seed"]):
        found.append(f"compare.bootstrap.seed={boot['seed']!r} must be a whole number")
    confidence = boot["confidence"]
    if not is_number(confidence) or not 0 < confidence < 1:
        found.append(f"compare.bootstrap.confidence={confidence!r} must be between 0 and 1 (0.95: 95 % intervals)")
    unknown = [str(m) for m in boot["metrics"] if m not in metric_keys()]
    if unknown:
        found.append(f"compare.bootstrap.metrics: unknown {unknown}; choose from {', '.join(sorted(metric_keys()))}")
    return found


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
    """Search, tabulate, write ``comparison.{md,csv,png}`` and ``learning_curves.png`` to ``output_dir``
    (and an MLflow run).

    With test predictions available, also ``comparison_test.{md,csv,json}``: the bootstrap table.
    ``output_dir`` defaults to ``cfg.paths.output_dir``.
    """
    if not cfg.get("experiment_name"):
        raise ConfigError("name the MLflow experiment to compare: experiment=NAME (train.py's experiment_name)")
    uri = absolute_sqlite_uri(str(cfg.tracking_uri))
    settings = stats_settings(cfg)
    problems = settings_problems(settings)
    if problems:
        raise ConfigError("; ".join(problems))
    metrics = [str(m) for m in cfg.metrics]
    prefix = subset_metric_prefix(str(settings["subset"]))
    test_columns = [f"{prefix}/{m}" for m in settings["test_metrics"]]
    group_by = str(cfg.group_by) if cfg.group_by else None
    runs = search_runs(uri, str(cfg.experiment_name), str(cfg.filter or ""), [str(s) for s in cfg.statuses])
    trials = [run for run in runs if is_sweep_trial(run)]
    left_out = ""
    if trials and not settings["include_sweep_trials"]:
        # trials train on a sweep's short budget: not comparable with full runs unless asked for
        runs = [run for run in runs if not is_sweep_trial(run)]
        left_out = f"{len(trials)} sweep trial(s) left out (compare.include_sweep_trials=true compares them)"
    if not runs:
        raise ConfigError(
            f"no runs in experiment {cfg.experiment_name!r} match filter={cfg.filter!r} statuses={cfg.statuses}"
            + (f"; {left_out}" if left_out else "")
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
    intervals: dict[str, dict[str, Estimate]] = {}
    panels = list(columns)
    if comparison is not None:
        text += f"\n## Test set, {100 * comparison.confidence:g}% bootstrap intervals\n\n{comparison.markdown()}"
        extra = [output_dir / f"comparison_test.{ext}" for ext in ("md", "csv", "json")]
        extra[0].write_text(comparison.markdown(), encoding="utf-8")
        comparison.write_csv(extra[1])
        extra[2].write_text(comparison.to_json() + "\n", encoding="utf-8")
        files += extra
        for run in in_table_order:
            system = comparison.systems.get(run_label(run, group_by))
            if system is not None:
                intervals[run.info.run_id] = system.estimates
        # every interval computed is drawn: a bootstrap metric without a table column gets a panel too
        panels += [f"{prefix}/{m}" for m in comparison.metrics if f"{prefix}/{m}" not in panels]
    files[0].write_text(text, encoding="utf-8")
    write_csv(rows, columns, files[1])
    title = f"{cfg.experiment_name} ({len(runs)} runs)"
    confidence = comparison.confidence if comparison is not None else 0.95
    save_figure(comparison_figure(rows, panels, title, intervals, prefix, confidence), files[2])
    curves = learning_curves_figure(rows, metric_histories(uri, by_id, metrics), metrics, f"{title}: validation")
    if curves is not None:
        files.append(output_dir / "learning_curves.png")
        save_figure(curves, files[-1])
    shown = table if comparison is None else f"{table}\n\n{comparison.markdown()}"
    note = f"\n{left_out}" if left_out else ""
    print(f"\n{cfg.experiment_name}: {len(runs)} runs\n\n{shown}{note}\n\nwritten: {', '.join(str(f) for f in files)}")
    if cfg.log_run:
        run_id = log_comparison(uri, str(cfg.experiment_name), group_by, files)
        print(f"MLflow comparison run {run_id} (tag empdg.role=comparison) at {uri}")
    return rows
