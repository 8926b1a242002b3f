"""The report of a blind study: annotations in, tables per criterion out (Markdown, JSON, an MLflow run).

Attention checks come first: an annotator who passes fewer than ``report.min_attention_pass`` of their checks on
relevance (the gold reply picked over another dialogue's; another dialogue's reply rated at most 2) is flagged
and, with ``report.exclude_flagged`` (the default), every answer of theirs is left out (the report counts them
either way). Then, per criterion, on the remaining answers (:mod:`empdg.evaluation.human_stats`): win/tie/loss
of every pair of systems, Bradley-Terry strengths, mean ratings, Krippendorff's α (ratings) and Fleiss' κ
(choices). System names come from the study's key.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from empdg.config.human_eval_schema import HumanReportConfig
from empdg.data.file_schema import mb_to_bytes
from empdg.evaluation.bootstrap import Estimate
from empdg.evaluation.human_export import CRITERIA
from empdg.evaluation.human_import import Answer, Study, read_annotations, read_study
from empdg.evaluation.human_stats import (
    PairJudgment,
    RatingJudgment,
    bradley_terry,
    fleiss_kappa,
    krippendorff_alpha,
    rating_means,
    win_tie_loss,
)

__all__ = ["AttentionResult", "HumanReport", "attention_results", "build_report", "report_study"]

ROLE = "human_evaluation"  # empdg.role of the MLflow run (compare skips these runs)


@dataclass(frozen=True)
class AttentionResult:
    annotator: str
    passed: int
    answered: int
    flagged: bool


@dataclass
class HumanReport:
    """Everything the report shows, in plain data (``to_json``) and as Markdown (``markdown``)."""

    systems: list[str]  # names, in the key's order of opaque ids
    dialogues: int
    settings: dict[str, Any]
    attention: list[AttentionResult]
    excluded: list[str]
    answers_used: int
    answers_excluded: int
    pairs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # criterion -> rows
    strengths: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # criterion -> system -> Estimate
    ratings: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    agreement: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, default=str, allow_nan=True)

    def markdown(self) -> str:
        level = f"{100 * self.settings['confidence']:g}%"
        flagged = [a for a in self.attention if a.flagged]
        lines = [
            f"# Human evaluation: {len(self.systems)} systems, {self.dialogues} dialogues", "",
            f"Annotators: {len(self.attention)}; failing attention checks (< {self.settings['min_attention_pass']:g} "
            f"passed): {len(flagged)}; excluded: {len(self.excluded)} ({self.answers_excluded} answers left out, "
            f"{self.answers_used} used).", "",
            "| annotator | checks passed | flagged | excluded |", "|---|---|---|---|",
        ]  # fmt: skip
        for a in self.attention:
            lines.append(f"| {a.annotator} | {a.passed}/{a.answered} | {'yes' if a.flagged else ''} | "
                         f"{'yes' if a.annotator in self.excluded else ''} |")  # fmt: skip
        for criterion in CRITERIA:
            lines += ["", f"## {criterion}", ""]
            if self.pairs.get(criterion):
                lines += [f"Pairwise ({level} bootstrap intervals over dialogues):", "",
                          "| system | vs | n | win | tie | loss |", "|---|---|---|---|---|---|"]  # fmt: skip
                for row in self.pairs[criterion]:
                    cells = [_estimate(row[o]) for o in ("win", "tie", "loss")]
                    lines.append(f"| {row['system']} | {row['opponent']} | {row['n']} | " + " | ".join(cells) + " |")
                strengths = {s: Estimate(**e) for s, e in self.strengths[criterion].items()}
                ranked = sorted(self.systems, key=lambda s: -strengths[s].value if math.isfinite(strengths[s].value)
                                else math.inf)  # fmt: skip
                lines += ["", f"Bradley-Terry strength (log scale, mean 0; {level} intervals, the model refitted on "
                          "each resample):", "", "| system | strength |", "|---|---|"]  # fmt: skip
                lines += [f"| {s} | {_estimate(strengths[s])} |" for s in ranked]
            if self.ratings.get(criterion):
                lines += ["", f"Ratings 1-5 ({level} intervals):", "", "| system | n | mean |", "|---|---|---|"]
                for system in self.systems:
                    cell = self.ratings[criterion][system]
                    lines.append(f"| {system} | {cell['n']} | {_estimate(cell['mean'], 2)} |")
            agree = self.agreement.get(criterion, {})
            parts = []
            if "alpha" in agree:
                parts.append(f"Krippendorff's α (ordinal, ratings) {_number(agree['alpha'])}")
            if "kappa" in agree:
                parts.append(f"Fleiss' κ (choices) {_number(agree['kappa'])} on {agree['kappa_items']} tasks "
                             f"× {agree['kappa_raters']} annotators")  # fmt: skip
            if parts:
                lines += ["", "Agreement: " + "; ".join(parts) + "."]
        return "\n".join(lines) + "\n"


def _number(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if math.isfinite(value) else "n/a"


def _estimate(estimate: dict[str, float] | Estimate, digits: int = 3) -> str:
    e = estimate if isinstance(estimate, Estimate) else Estimate(**estimate)
    return f"{_number(e.value, digits)} [{_number(e.low, digits)}, {_number(e.high, digits)}]"


CHECK_KINDS = ("check", "rating_check")


def _check_passed(answer: Answer, study: Study) -> bool:
    """Whether an answer on a check's criterion is right: the gold side of a pairwise check, a rating at most
    ``study.rating_check_max`` for another dialogue's reply."""
    task = study.tasks[answer.task_id]
    if task["kind"] == "rating_check":
        return int(answer.value) <= study.rating_check_max
    return answer.value == task["gold_side"]


def attention_results(answers: Sequence[Answer], study: Study, min_pass: float) -> list[AttentionResult]:
    """Per annotator: checks passed / answered on the check criterion; flagged below ``min_pass``."""
    tally: dict[str, list[int]] = {}
    for answer in answers:
        tally.setdefault(answer.annotator, [0, 0])
        if study.tasks[answer.task_id]["kind"] in CHECK_KINDS and answer.criterion == study.check_criterion:
            tally[answer.annotator][0] += _check_passed(answer, study)
            tally[answer.annotator][1] += 1
    return [
        AttentionResult(name, passed, answered, answered > 0 and passed / answered < min_pass)
        for name, (passed, answered) in sorted(tally.items())
    ]


def _judgments(answers: Sequence[Answer], study: Study) -> tuple[list[PairJudgment], list[RatingJudgment]]:
    pairs, ratings = [], []
    for answer in answers:
        task = study.tasks[answer.task_id]
        if task["kind"] == "pairwise":
            left, right = study.systems[task["left"]], study.systems[task["right"]]
            outcome = {"A": 1, "B": -1, "tie": 0}[str(answer.value)]
            pairs.append(PairJudgment(task["dialogue_id"], answer.annotator, answer.criterion, left, right, outcome))
        elif task["kind"] == "rating":
            system = study.systems[task["system"]]
            ratings.append(RatingJudgment(task["dialogue_id"], answer.annotator, answer.criterion, system,
                                          int(answer.value)))  # fmt: skip
    return pairs, ratings


def build_report(answers: Sequence[Answer], study: Study, settings: HumanReportConfig) -> HumanReport:
    """Every statistic of the report from checked answers (:func:`~empdg.evaluation.human_import.read_annotations`)."""
    attention = attention_results(answers, study, settings.min_attention_pass)
    excluded = sorted(a.annotator for a in attention if a.flagged) if settings.exclude_flagged else []
    kept = [a for a in answers if a.annotator not in excluded]
    systems = [study.systems[s] for s in sorted(study.systems, key=lambda s: (len(s), s))]
    dialogues = sorted(study.dialogues)
    boot = dict(n_resamples=settings.n_bootstrap, seed=settings.seed, confidence=settings.confidence)
    report = HumanReport(systems, len(dialogues), asdict(settings), attention, excluded, len(kept),
                         len(answers) - len(kept))  # fmt: skip
    pair_judgments, rating_judgments = _judgments(kept, study)
    for criterion in CRITERIA:
        pairs = [j for j in pair_judgments if j.criterion == criterion]
        rated = [j for j in rating_judgments if j.criterion == criterion]
        agreement: dict[str, Any] = {}
        if pairs:
            rows = []
            for first, second in itertools.combinations(systems, 2):
                rates, n = win_tie_loss(pairs, first, second, dialogues, **boot)
                rows.append({"system": first, "opponent": second, "n": n, **{k: asdict(v) for k, v in rates.items()}})
            report.pairs[criterion] = rows
            strengths = bradley_terry(pairs, systems, dialogues, settings.bt_alpha, **boot)
            report.strengths[criterion] = {s: asdict(e) for s, e in strengths.items()}
            choices = _by_task(kept, criterion, study, ("pairwise",))
            kappa, items, raters = fleiss_kappa({t: list(v.values()) for t, v in choices.items()}, ("A", "B", "tie"))
            agreement.update(kappa=kappa, kappa_items=items, kappa_raters=raters)
        if rated:
            means = rating_means(rated, systems, dialogues, **boot)
            report.ratings[criterion] = {s: {"mean": asdict(e), "n": n} for s, (e, n) in means.items()}
            scores = _by_task(kept, criterion, study, ("rating",))
            agreement["alpha"] = krippendorff_alpha(scores, "ordinal", domain=None) if scores else math.nan
        if agreement:
            report.agreement[criterion] = agreement
    return report


def _by_task(answers: Sequence[Answer], criterion: str, study: Study, kinds: tuple[str, ...]) -> dict[str, dict]:
    """task -> annotator -> answer, for the tasks of ``kinds`` on ``criterion``."""
    grouped: dict[str, dict[str, Any]] = {}
    for answer in answers:
        if answer.criterion == criterion and study.tasks[answer.task_id]["kind"] in kinds:
            grouped.setdefault(answer.task_id, {})[answer.annotator] = answer.value
    return grouped


_METRIC_NAME = re.compile(r"[^\w.\- /]")  # MLflow metric names: letters, digits, _ . - space /


def report_metrics(report: HumanReport) -> dict[str, float]:
    """The report's numbers as MLflow metrics (``human/<criterion>/...``; system names made name-safe)."""
    safe = lambda name: _METRIC_NAME.sub("_", name)  # noqa: E731
    metrics: dict[str, float] = {
        "human/annotators": len(report.attention), "human/annotators_flagged": sum(a.flagged for a in report.attention),
        "human/annotators_excluded": len(report.excluded), "human/answers_used": report.answers_used,
    }  # fmt: skip
    for criterion in CRITERIA:
        for system, theta in report.strengths.get(criterion, {}).items():
            metrics[f"human/{criterion}/bt/{safe(system)}"] = theta["value"]
        for row in report.pairs.get(criterion, []):
            metrics[f"human/{criterion}/win/{safe(row['system'])}_vs_{safe(row['opponent'])}"] = row["win"]["value"]
        for system, cell in report.ratings.get(criterion, {}).items():
            metrics[f"human/{criterion}/rating/{safe(system)}"] = cell["mean"]["value"]
        for name in ("alpha", "kappa"):
            if name in report.agreement.get(criterion, {}):
                metrics[f"human/{criterion}/{name}"] = report.agreement[criterion][name]
    return {k: float(v) for k, v in metrics.items() if math.isfinite(float(v))}


def log_report(tracking_uri: str, experiment: str, study_dir: Path, report: HumanReport, files: Sequence[Path]) -> str:
    """A finished MLflow run (tag ``empdg.role=human_evaluation``) with the metrics and the files; its id."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found is not None else client.create_experiment(experiment)
    tags = {"empdg.role": ROLE, "human_eval.study": str(study_dir), "human_eval.systems": ", ".join(report.systems)}
    run = client.create_run(experiment_id, run_name="human-eval", tags=tags)
    run_id = run.info.run_id
    for key, value in report.settings.items():
        client.log_param(run_id, f"report.{key}", value)
    for key, value in report_metrics(report).items():
        client.log_metric(run_id, key, value)
    for path in files:
        client.log_artifact(run_id, str(path), "human_evaluation")
    client.set_terminated(run_id)
    return run_id


def report_study(
    study_dir: Path, annotation_files: Sequence[Path], settings: HumanReportConfig, output_dir: Path
) -> tuple[HumanReport, list[Path]]:
    """Read the study and its annotations, build the report, write ``human_eval.{md,json}``."""
    max_bytes = mb_to_bytes(settings.max_file_mb)
    study = read_study(study_dir, max_bytes)
    answers = read_annotations(annotation_files, study, max_bytes)
    report = build_report(answers, study, settings)
    output_dir.mkdir(parents=True, exist_ok=True)
    files = [output_dir / "human_eval.md", output_dir / "human_eval.json"]
    files[0].write_text(report.markdown(), encoding="utf-8")
    files[1].write_text(report.to_json() + "\n", encoding="utf-8")
    return report, files
