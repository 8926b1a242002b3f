"""Simulated annotators for an exported study: what the report must find when the truth is known.

A :class:`SimulatedAnnotator` prefers one system: on a pairwise task holding it, it picks that system with
probability ``p_prefer`` (else the other one, or a tie with probability ``p_tie``), and rates its replies
``rating_gap`` higher; it passes attention checks (the gold reply wins on every criterion; another dialogue's
reply is rated 1 or 2). A ``random``
annotator answers uniformly at random everywhere, checks included. Answers are written as Label Studio
writes its JSON export, or into copies of the study's CSVs; everything is seeded.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from empdg.evaluation.human_export import CRITERIA, PAIR_COLUMNS, RATING_COLUMNS, annotator_views

__all__ = ["SimulatedAnnotator", "simulate_answers", "write_csv_answers", "write_label_studio_export"]


@dataclass(frozen=True)
class SimulatedAnnotator:
    name: str
    prefers: str | None = None  # a system's name (from system_key.json); None: no preference
    p_prefer: float = 0.8
    p_tie: float = 0.1
    rating_gap: int = 1
    random: bool = False


def _load(study_dir: Path) -> tuple[dict[str, Any], dict[str, str]]:
    manifest = json.loads((study_dir / "study.json").read_text(encoding="utf-8"))
    key = json.loads((study_dir / "system_key.json").read_text(encoding="utf-8"))
    return manifest, {entry["name"]: opaque for opaque, entry in key["systems"].items()}


def _pair_answer(task: Mapping[str, Any], who: SimulatedAnnotator, preferred: str | None, rng: random.Random) -> str:
    if who.random:
        return rng.choice(["A", "B", "tie"])
    if task["kind"] == "check":
        return task["gold_side"]
    draw = rng.random()
    if preferred not in (task["left"], task["right"]) or draw < who.p_tie:
        return "tie" if draw < who.p_tie else rng.choice(["A", "B"])
    wins = draw < who.p_tie + (1 - who.p_tie) * who.p_prefer
    side_of_preferred = "A" if task["left"] == preferred else "B"
    return side_of_preferred if wins else ("B" if side_of_preferred == "A" else "A")


def _rating(task: Mapping[str, Any], who: SimulatedAnnotator, preferred: str | None, rng: random.Random) -> int:
    if who.random:
        return rng.randint(1, 5)
    if task["kind"] == "rating_check":
        return rng.choice([1, 2])
    base = 3 + (who.rating_gap if task["system"] == preferred else 0)
    return max(1, min(5, base + rng.choice([-1, 0, 0, 1])))


def simulate_answers(
    study_dir: Path, annotators: Sequence[SimulatedAnnotator], seed: int = 0
) -> dict[str, dict[str, dict[str, str | int]]]:
    """annotator -> task id -> criterion -> answer, for every task of the study."""
    manifest, opaque = _load(study_dir)
    answers: dict[str, dict[str, dict[str, str | int]]] = {}
    for number, who in enumerate(annotators):
        rng = random.Random(f"{seed}-{number}")
        preferred = opaque[who.prefers] if who.prefers is not None else None
        mine = answers.setdefault(who.name, {})
        for task in manifest["tasks"]:
            pick = _rating if task["kind"] in ("rating", "rating_check") else _pair_answer
            mine[task["task_id"]] = {criterion: pick(task, who, preferred, rng) for criterion in CRITERIA}
    return answers


def write_label_studio_export(
    study_dir: Path, answers: Mapping[str, Mapping[str, Mapping[str, str | int]]], kind: str, path: Path
) -> Path:
    """The answers to the ``pairwise`` or ``ratings`` tasks as Label Studio's JSON export (annotators as users
    1, 2, ... in the order of ``answers``)."""
    manifest, _ = _load(study_dir)
    views = annotator_views(manifest)[0 if kind == "pairwise" else 1]
    exported = []
    for number, view in enumerate(views, start=1):
        annotations = []
        for user, (_, given) in enumerate(answers.items(), start=1):
            values = given.get(view["task_id"])
            if values is None:
                continue
            result = [
                {"from_name": c, "to_name": "dialogue" if kind == "pairwise" else "reply",
                 "type": "choices" if kind == "pairwise" else "rating",
                 "value": {"choices": ["Tie" if v == "tie" else v]} if kind == "pairwise" else {"rating": v}}
                for c, v in values.items()
            ]  # fmt: skip
            annotations.append({"id": len(annotations) + 1, "completed_by": user, "result": result,
                                "was_cancelled": False})  # fmt: skip
        exported.append({"id": number, "data": view, "annotations": annotations})
    path.write_text(json.dumps(exported, ensure_ascii=False), encoding="utf-8")
    return path


def write_csv_answers(
    study_dir: Path, answers: Mapping[str, Mapping[str, str | int]], annotator: str, kind: str, path: Path
) -> Path:
    """A copy of the study's ``{kind}.csv`` filled with one annotator's answers (their name in ``annotator``)."""
    columns = PAIR_COLUMNS if kind == "pairwise" else RATING_COLUMNS
    with (study_dir / "csv" / f"{kind}.csv").open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            given = answers.get(row["task_id"], {})
            writer.writerow({**row, "annotator": annotator, **{c: given.get(c, "") for c in CRITERIA}})
    return path
