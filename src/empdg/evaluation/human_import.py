"""Read a blind study's files back: its manifest and key, and the annotations (Label Studio JSON export, CSV).

Every file goes through :mod:`empdg.data.file_schema` (size before reading, UTF-8, JSON depth, a schema);
a bad one is an :class:`~empdg.data.errors.InvalidFileError` naming the file and the record (the task's index
and id in a Label Studio export, the row and task in a CSV), which a command prints as one ``error:`` line.

An answer is kept per (task, annotator, criterion); an empty CSV cell or a cancelled Label Studio annotation
is no answer. The annotator is Label Studio's ``completed_by`` (its e-mail when the export holds the user,
else the user id), or the CSV's ``annotator`` column (the file's name when the column is empty).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from typing_extensions import NotRequired, TypedDict

from empdg.data.file_schema import invalid, load_json_bounded, read_text_bounded, validate
from empdg.evaluation.human_export import CRITERIA, PAIR_CHOICES, RATING_CHECK_MAX

__all__ = ["Answer", "Study", "read_annotations", "read_csv_annotations", "read_label_studio_export", "read_study"]

SETTING = "report.max_file_mb"
_EXPORT_DEPTH = 12  # task > annotations > result > value > choices: 6 levels; room for fields we ignore


@dataclass(frozen=True)
class Answer:
    """One annotator's answer to one criterion of one task: ``A``/``B``/``tie`` or a rating 1-5."""

    task_id: str
    annotator: str
    criterion: str
    value: str | int
    path: Path  # the file and the record, for messages
    where: str


@dataclass
class Study:
    """A study's manifest (tasks by id, dialogues by id) and its key (opaque id -> system name)."""

    path: Path
    tasks: dict[str, dict[str, Any]]
    dialogues: dict[str, dict[str, Any]]
    systems: dict[str, str]
    check_criterion: str
    rating_check_max: int = RATING_CHECK_MAX  # a rating check passes at or below it


class _Dialogue(TypedDict):
    dialogue_id: str
    emotion: str
    context: list[str]
    reference: str
    replies: dict[str, str]


class _Task(TypedDict):
    task_id: str
    kind: Literal["pairwise", "check", "rating", "rating_check"]
    dialogue_id: str
    left: NotRequired[str]
    right: NotRequired[str]
    system: NotRequired[str]
    distractor_dialogue_id: NotRequired[str]
    gold_side: NotRequired[Literal["A", "B"]]


class _Manifest(TypedDict):
    format: Literal["empdg-human-study/1", "empdg-human-study/2"]
    criteria: list[str]
    check_criterion: str
    rating_check_max: NotRequired[int]
    systems: list[str]
    dialogues: list[_Dialogue]
    tasks: list[_Task]


class _KeyEntry(TypedDict):
    name: str


class _Key(TypedDict):
    format: Literal["empdg-human-study/1", "empdg-human-study/2"]
    systems: dict[str, _KeyEntry]


class _Result(TypedDict):
    from_name: str
    type: str
    value: dict[str, Any]


class _Annotation(TypedDict):
    completed_by: NotRequired[int | str | dict[str, Any]]
    result: list[_Result]
    was_cancelled: NotRequired[bool]


class _ExportData(TypedDict):
    task_id: str


class _ExportTask(TypedDict):
    id: NotRequired[int]
    data: _ExportData
    annotations: NotRequired[list[_Annotation]]


_SCHEMAS: dict[str, Any] = {"manifest": _Manifest, "key": _Key, "export": list[_ExportTask]}


def _load(path: Path, what: str, schema: str, max_bytes: int | None, depth: int = 16) -> Any:
    try:
        data = load_json_bounded(path, max_bytes=max_bytes, max_depth=depth, what=what, setting=SETTING)
    except FileNotFoundError:
        from empdg.errors import MissingFileError

        raise MissingFileError(f"{path}: no such {what}") from None
    return validate(data, _SCHEMAS[schema], path=path)


def read_study(study_dir: Path, max_bytes: int | None = None) -> Study:
    """``study.json`` and ``system_key.json`` of an exported study, checked against each other."""
    manifest_path, key_path = study_dir / "study.json", study_dir / "system_key.json"
    manifest = _load(manifest_path, "study manifest", "manifest", max_bytes)
    key = _load(key_path, "study key", "key", max_bytes)
    dialogues = {d["dialogue_id"]: d for d in manifest["dialogues"]}
    systems = {opaque: entry["name"] for opaque, entry in key["systems"].items()}
    if sorted(systems) != sorted(manifest["systems"]):
        raise invalid(key_path, f"systems {sorted(systems)} are not the study's {sorted(manifest['systems'])} "
                      f"(the key of another export?)")  # fmt: skip
    tasks = {}
    for i, task in enumerate(manifest["tasks"]):
        needed = {
            "pairwise": ("left", "right"),
            "check": ("distractor_dialogue_id", "gold_side"),
            "rating": ("system",),
            "rating_check": ("distractor_dialogue_id",),
        }
        missing = [k for k in needed[task["kind"]] if k not in task]
        refs = [task["dialogue_id"], task.get("distractor_dialogue_id", task["dialogue_id"])]
        if missing or any(ref not in dialogues for ref in refs):
            problem = f"lacks {', '.join(missing)}" if missing else "names an unknown dialogue"
            raise invalid(manifest_path, f"{task['kind']} task {task['task_id']} {problem}", f"tasks[{i}]")
        tasks[task["task_id"]] = task
    return Study(study_dir, tasks, dialogues, systems, manifest["check_criterion"],
                 manifest.get("rating_check_max", RATING_CHECK_MAX))  # fmt: skip


def _annotator(completed_by: Any, default: str) -> str:
    if isinstance(completed_by, dict):
        return str(completed_by.get("email") or completed_by.get("id") or default)
    return default if completed_by is None else str(completed_by)


def read_label_studio_export(path: Path, max_bytes: int | None = None) -> list[Answer]:
    """The answers of a Label Studio JSON export (``Export > JSON`` of a project holding the study's tasks)."""
    tasks = _load(path, "Label Studio export", "export", max_bytes, depth=_EXPORT_DEPTH)
    answers = []
    for i, task in enumerate(tasks):
        task_id = task["data"]["task_id"]
        for j, annotation in enumerate(task.get("annotations", [])):
            if annotation.get("was_cancelled"):
                continue
            annotator = _annotator(annotation.get("completed_by"), "unknown")
            for k, result in enumerate(annotation["result"]):
                where = f"[{i}] (task {task_id}).annotations[{j}].result[{k}]"
                criterion, value = result["from_name"], result["value"]
                if criterion not in CRITERIA:
                    raise invalid(path, f"from_name={criterion!r} is none of {list(CRITERIA)}", where)
                if result["type"] == "choices":
                    choices = value.get("choices")
                    if not (isinstance(choices, list) and len(choices) == 1 and choices[0] in PAIR_CHOICES):
                        raise invalid(path, f"choices={choices!r}: expected one of {list(PAIR_CHOICES)}", where)
                    answer: str | int = _choice(choices[0])
                elif result["type"] == "rating":
                    answer = value.get("rating")
                    if not (isinstance(answer, int) and not isinstance(answer, bool) and 1 <= answer <= 5):
                        raise invalid(path, f"rating={answer!r}: expected an integer from 1 to 5", where)
                else:
                    raise invalid(path, f"type={result['type']!r}: expected choices or rating", where)
                answers.append(Answer(task_id, annotator, criterion, answer, path, where))
    return answers


def _choice(text: str) -> str:
    return text.strip().upper() if text.strip().upper() in ("A", "B") else "tie"


def read_csv_annotations(path: Path, max_bytes: int | None = None) -> list[Answer]:
    """The answers of a filled ``pairwise.csv`` or ``ratings.csv`` (A, B or tie; or 1-5; empty: no answer)."""
    text = read_text_bounded(path, max_bytes=max_bytes, what="annotation CSV", setting=SETTING).lstrip("\ufeff")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    missing = [column for column in ("task_id", *CRITERIA) if column not in header]
    if missing:
        raise invalid(path, f"header lacks column(s) {', '.join(missing)} (the columns of the exported CSV)", "row 1")
    answers = []
    for number, row in enumerate(reader, start=2):
        task_id = (row.get("task_id") or "").strip()
        where = f"row {number} (task {task_id or '?'})"
        if None in row:
            raise invalid(path, f"{len(header) + len(row[None])} cells, the header has {len(header)}", where)
        annotator = (row.get("annotator") or "").strip() or path.stem
        for criterion in CRITERIA:
            cell = (row.get(criterion) or "").strip()
            if not cell:
                continue
            if not task_id:
                raise invalid(path, "an answer without a task_id", where)
            value = _csv_value(cell, path, f"{where}: {criterion}")
            answers.append(Answer(task_id, annotator, criterion, value, path, where))
    return answers


def _csv_value(cell: str, path: Path, where: str) -> str | int:
    if cell.upper() in ("A", "B", "TIE"):
        return _choice(cell)
    if cell in ("1", "2", "3", "4", "5"):
        return int(cell)
    raise invalid(path, f"{cell[:40]!r}: expected A, B or tie (pairwise), or a rating 1 to 5", where)


def _is_csv(path: Path) -> bool:
    return path.suffix.lower() == ".csv"


def read_annotations(paths: Sequence[Path], study: Study, max_bytes: int | None = None) -> list[Answer]:
    """The answers of every file (``.csv``: a filled CSV, else a Label Studio JSON export), checked against the
    study: a known task, the kind of answer its kind takes, one answer per annotator, task and criterion."""
    answers: list[Answer] = []
    seen: dict[tuple[str, str, str], Answer] = {}
    for path in paths:
        if not path.is_file():
            from empdg.errors import MissingFileError

            raise MissingFileError(f"annotations: {path}: no such file")
        read = read_csv_annotations if _is_csv(path) else read_label_studio_export
        for answer in read(path, max_bytes):
            _check(answer, study, seen)
            answers.append(answer)
    return answers


def _check(answer: Answer, study: Study, seen: dict[tuple[str, str, str], Answer]) -> None:
    path, where = answer.path, answer.where
    task = study.tasks.get(answer.task_id)
    if task is None:
        raise invalid(path, f"task {answer.task_id!r} is not in {study.path / 'study.json'} (another study's file?)",
                      where)  # fmt: skip
    rating = task["kind"] in ("rating", "rating_check")
    if rating != isinstance(answer.value, int):
        wanted = "a rating 1 to 5" if rating else "A, B or tie"
        raise invalid(path, f"{answer.criterion}={answer.value!r}: task {answer.task_id} takes {wanted}", where)
    key = (answer.task_id, answer.annotator, answer.criterion)
    if key in seen:
        raise invalid(path, f"annotator {answer.annotator!r} answered {answer.criterion} of task {answer.task_id} "
                      f"twice (first at {seen[key].path}: {seen[key].where})", where)  # fmt: skip
    seen[key] = answer
