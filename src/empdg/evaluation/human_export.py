"""Export a blind human evaluation: the same dialogues, every system's reply, tasks for Label Studio and a CSV.

From two or more systems' prediction files (a training run's ``predictions.jsonl`` or any released format
:func:`~empdg.evaluation.release_format.load_predictions` reads), the study keeps the examples every system
answered (by ``example_id`` when every record has one, else by the dialogue context and gold reply with case
and spacing ignored: KEMP spaces punctuation differently), draws ``study.n_dialogues`` of them stratified by
gold emotion (seeded), and writes

- pairwise A/B tasks: one per dialogue and pair of systems, left/right drawn at random; per criterion
  (empathy, relevance, fluency) the annotator picks A, B or tie, as in the EmpDG paper's A/B test;
- rating tasks: one per dialogue and system; each criterion on a 1-5 scale;
- attention checks mixed into both kinds of task (``study.attention_share`` of each): in the pairwise tasks the
  dialogue's gold reply against another dialogue's gold reply, where the gold one must win on relevance; in the
  rating tasks another dialogue's gold reply alone, which must be rated at most ``RATING_CHECK_MAX`` on
  relevance (so an annotator who only rates is checked too).

Annotators see opaque system ids only (``S1``, ``S2``... in a seeded random order) and never a system's
name: ``study.json`` (tasks, dialogues, answers of the checks) goes to the report, ``system_key.json`` (opaque
id -> system) is written apart and only the report reads it. Task files: ``label_studio/{pairwise,ratings}
_tasks.json`` with their labelling configs ``{pairwise,ratings}_config.xml``, and ``csv/{pairwise,ratings}.csv``
(one row per task, empty answer columns, UTF-8 with a byte-order mark so that spreadsheets read it as such).
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from empdg.config.human_eval_schema import HumanStudyConfig
from empdg.data.file_schema import mb_to_bytes
from empdg.errors import ConfigError, MissingFileError, user_errors_from
from empdg.evaluation.release_format import PredictionRecord, load_predictions

__all__ = [
    "CHECK_CRITERION",
    "CRITERIA",
    "RATING_CHECK_MAX",
    "STUDY_FORMAT",
    "SystemSource",
    "align_systems",
    "annotator_views",
    "build_study",
    "export_study",
    "parse_systems",
    "stratified_sample",
]

CRITERIA = ("empathy", "relevance", "fluency")
#: the criterion an attention check's answer is known on: the dialogue's own gold reply fits it, another's does not
CHECK_CRITERION = "relevance"
#: a rating check (another dialogue's reply) passes when rated at most this on the check criterion
RATING_CHECK_MAX = 2
#: /2 added the rating checks (task kind ``rating_check``); /1 studies still read
STUDY_FORMAT = "empdg-human-study/2"
PAIR_QUESTIONS = {
    "empathy": "Empathy: which reply shows more understanding of how the speaker feels?",
    "relevance": "Relevance: which reply fits the conversation better?",
    "fluency": "Fluency: which reply reads more naturally?",
}
RATING_QUESTIONS = {
    "empathy": "Empathy: does the reply show it understands how the speaker feels? (1 = not at all, 5 = fully)",
    "relevance": "Relevance: does the reply fit the conversation? (1 = not at all, 5 = fully)",
    "fluency": "Fluency: is the reply natural, correct language? (1 = not at all, 5 = fully)",
}
PAIR_CHOICES = ("A", "B", "Tie")
PAIR_COLUMNS = ("task_id", "context", "reply_a", "reply_b", "annotator", *CRITERIA)
RATING_COLUMNS = ("task_id", "context", "reply", "annotator", *CRITERIA)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet runs a cell opening so as a formula


@dataclass(frozen=True)
class SystemSource:
    """A system of the study: its name (never shown to annotators), its prediction file, the system in it."""

    name: str
    path: Path
    system: str | None = None


def parse_systems(systems: Mapping[str, Any] | None) -> list[SystemSource]:
    """``systems``: name -> prediction file, or name -> ``{path: FILE, system: NAME}`` (a multi-system release)."""
    if systems is not None and not isinstance(systems, Mapping):
        raise ConfigError(f"systems={systems!r}: give NAME: FILE pairs, e.g. systems={{A: a.jsonl, B: b.txt}}")
    sources = []
    for name, value in (systems or {}).items():
        if isinstance(value, Mapping):
            unknown = sorted(set(value) - {"path", "system"})
            if unknown or not value.get("path"):
                raise ConfigError(
                    f"systems.{name}: give a file, or {{path: FILE, system: NAME}} (got keys {sorted(value)})"
                )
            path, system = value["path"], value.get("system")
        else:
            path, system = value, None
        path = Path(str(path)).expanduser()
        if not path.is_file():
            raise MissingFileError(f"systems.{name}={path}: no such prediction file")
        sources.append(SystemSource(str(name), path, None if system is None else str(system)))
    if len(sources) < 2:
        raise ConfigError(
            "a study needs two or more systems: systems={EmpDG: pred_EmpDG.txt, MoEL: pred_MoEL.txt} "
            "(or +systems.NAME=FILE for each)"
        )
    return sources


def _normalised(text: str) -> str:
    return "".join(text.lower().split())


def example_key(record: PredictionRecord) -> str:
    """The example a record answers, across files that lack ids: its context and gold reply, spacing ignored."""
    return "\x1f".join(_normalised(turn) for turn in [*record.context, record.ref])


def align_systems(records: Mapping[str, Sequence[PredictionRecord]]) -> list[dict[str, PredictionRecord]]:
    """The examples every system answered, in the first system's order: one ``{system: record}`` per example.

    Matched by ``example_id`` when every record has one, else by :func:`example_key`; within a file the first
    record of a key counts (a release that repeats a block).
    """
    use_ids = all(r.example_id is not None for recs in records.values() for r in recs)
    keyed: dict[str, dict[str, PredictionRecord]] = {}
    for name, recs in records.items():
        index: dict[str, PredictionRecord] = {}
        for record in recs:
            index.setdefault(str(record.example_id) if use_ids else example_key(record), record)
        keyed[name] = index
    first, *others = list(records)
    return [
        {name: keyed[name][key] for name in records}
        for key in keyed[first]
        if all(key in keyed[other] for other in others)
    ]


def stratified_sample(emotions: Sequence[str], n: int, seed: int) -> list[int]:
    """Indices of ``n`` items drawn without replacement, each emotion in proportion to its share (largest
    remainders, ties to the emotion first in alphabetical order), in the order of ``emotions``."""
    if n >= len(emotions):
        return list(range(len(emotions)))
    rng = random.Random(seed)
    groups: dict[str, list[int]] = {}
    for i, emotion in enumerate(emotions):
        groups.setdefault(emotion, []).append(i)
    names = sorted(groups)
    exact = {name: n * len(groups[name]) / len(emotions) for name in names}
    quota = {name: math.floor(exact[name]) for name in names}
    by_remainder = sorted(names, key=lambda name: (-(exact[name] - quota[name]), name))
    for name in by_remainder[: n - sum(quota.values())]:
        quota[name] += 1
    chosen: list[int] = []
    for name in names:
        members = list(groups[name])
        rng.shuffle(members)
        chosen += members[: quota[name]]
    return sorted(chosen)


def dialogue_lines(context: Sequence[str]) -> list[dict[str, str]]:
    """The context as turns with their author: the last turn is the speaker's (the reply is the listener's)."""
    return [
        {"author": "Speaker" if (len(context) - 1 - i) % 2 == 0 else "Listener", "text": turn}
        for i, turn in enumerate(context)
    ]


def context_text(context: Sequence[str]) -> str:
    return "\n".join(f"{line['author']}: {line['text']}" for line in dialogue_lines(context))


def build_study(
    aligned: Sequence[Mapping[str, PredictionRecord]], names: Sequence[str], settings: HumanStudyConfig
) -> tuple[dict[str, Any], dict[str, str]]:
    """The study manifest (dialogues, tasks, the checks' answers; opaque system ids only) and the key
    (system name -> opaque id). Deterministic given ``settings.seed``."""
    rng = random.Random(settings.seed)
    shuffled = list(names)
    rng.shuffle(shuffled)
    opaque = {name: f"S{i + 1}" for i, name in enumerate(shuffled)}
    picked = stratified_sample([next(iter(ex.values())).emotion for ex in aligned], settings.n_dialogues, settings.seed)
    dialogues = []
    for number, index in enumerate(picked, start=1):
        example = aligned[index]
        first = example[names[0]]
        dialogues.append({
            "dialogue_id": f"d{number:04d}", "emotion": first.emotion, "context": list(first.context),
            "reference": first.ref, "replies": {opaque[name]: example[name].pred for name in names},
        })  # fmt: skip
    ids = sorted(opaque.values(), key=lambda s: int(s[1:]))
    pairwise: list[dict[str, Any]] = []
    if settings.pairwise:
        for dialogue in dialogues:
            for a, b in itertools.combinations(ids, 2):
                left, right = (a, b) if rng.random() < 0.5 else (b, a)
                pairwise.append(
                    {"kind": "pairwise", "dialogue_id": dialogue["dialogue_id"], "left": left, "right": right}
                )
        n_checks = math.ceil(settings.attention_share * len(pairwise)) if len(dialogues) > 1 else 0
        for _ in range(n_checks):
            own, other = rng.sample(range(len(dialogues)), 2)
            pairwise.append({
                "kind": "check", "dialogue_id": dialogues[own]["dialogue_id"],
                "distractor_dialogue_id": dialogues[other]["dialogue_id"], "gold_side": rng.choice(["A", "B"]),
            })  # fmt: skip
        rng.shuffle(pairwise)  # checks look like any other task and sit anywhere
    ratings: list[dict[str, Any]] = []
    if settings.ratings:
        ratings = [{"kind": "rating", "dialogue_id": d["dialogue_id"], "system": s} for d in dialogues for s in ids]
        n_checks = math.ceil(settings.attention_share * len(ratings)) if len(dialogues) > 1 else 0
        for _ in range(n_checks):
            own, other = rng.sample(range(len(dialogues)), 2)
            ratings.append({"kind": "rating_check", "dialogue_id": dialogues[own]["dialogue_id"],
                            "distractor_dialogue_id": dialogues[other]["dialogue_id"]})  # fmt: skip
        rng.shuffle(ratings)
    tasks = [{"task_id": f"p{i:05d}", **task} for i, task in enumerate(pairwise, start=1)]
    tasks += [{"task_id": f"r{i:05d}", **task} for i, task in enumerate(ratings, start=1)]
    manifest = {
        "format": STUDY_FORMAT,
        "settings": {k: getattr(settings, k) for k in ("n_dialogues", "seed", "attention_share")},
        "criteria": list(CRITERIA),
        "check_criterion": CHECK_CRITERION,
        "rating_check_max": RATING_CHECK_MAX,
        "systems": ids,
        "dialogues": dialogues,
        "tasks": tasks,
    }
    return manifest, opaque


def task_replies(task: Mapping[str, Any], dialogues: Mapping[str, Mapping[str, Any]]) -> tuple[str, str]:
    """The (A, B) replies a pairwise task or an attention check shows."""
    dialogue = dialogues[task["dialogue_id"]]
    if task["kind"] == "check":
        gold, other = dialogue["reference"], dialogues[task["distractor_dialogue_id"]]["reference"]
        return (gold, other) if task["gold_side"] == "A" else (other, gold)
    return dialogue["replies"][task["left"]], dialogue["replies"][task["right"]]


def annotator_views(manifest: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """What annotators see of each task (no system id, no kind): (pairwise, ratings)."""
    dialogues = {d["dialogue_id"]: d for d in manifest["dialogues"]}
    pairwise, ratings = [], []
    for task in manifest["tasks"]:
        dialogue = dialogues[task["dialogue_id"]]
        shown = {"task_id": task["task_id"], "dialogue": dialogue_lines(dialogue["context"]),
                 "context": context_text(dialogue["context"])}  # fmt: skip
        if task["kind"] == "rating":
            ratings.append({**shown, "reply": dialogue["replies"][task["system"]]})
        elif task["kind"] == "rating_check":
            ratings.append({**shown, "reply": dialogues[task["distractor_dialogue_id"]]["reference"]})
        else:
            reply_a, reply_b = task_replies(task, dialogues)
            pairwise.append({**shown, "reply_a": reply_a, "reply_b": reply_b})
    return pairwise, ratings


def label_studio_config(kind: str) -> str:
    """The labelling config (XML) of the ``pairwise`` or ``ratings`` project: the dialogue, the reply (or
    replies A and B), one required question per criterion."""
    dialogue = '<Paragraphs name="dialogue" value="$dialogue" layout="dialogue" nameKey="author" textKey="text"/>'
    lines = ["<View>", '  <Header value="The conversation so far"/>', f"  {dialogue}"]
    if kind == "pairwise":
        lines += ['  <Header value="Reply A"/>', '  <Text name="reply_a" value="$reply_a"/>',
                  '  <Header value="Reply B"/>', '  <Text name="reply_b" value="$reply_b"/>']  # fmt: skip
        for criterion in CRITERIA:
            lines.append(f"  <Header value={quoteattr(PAIR_QUESTIONS[criterion])}/>")
            lines.append(
                f'  <Choices name="{criterion}" toName="dialogue" choice="single" required="true" showInline="true">'
            )
            lines += [f'    <Choice value="{choice}"/>' for choice in PAIR_CHOICES]
            lines.append("  </Choices>")
    else:
        lines += ['  <Header value="Reply"/>', '  <Text name="reply" value="$reply"/>']
        for criterion in CRITERIA:
            lines.append(f"  <Header value={quoteattr(RATING_QUESTIONS[criterion])}/>")
            lines.append(f'  <Rating name="{criterion}" toName="reply" maxRating="5" required="true"/>')
    return "\n".join([*lines, "</View>"]) + "\n"


def _cell(text: str) -> str:
    return "'" + text if text.startswith(_FORMULA_START) else text


def _write_csv(path: Path, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8-sig") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_cell(str(row.get(column, ""))) for column in columns])


def write_study(manifest: Mapping[str, Any], key: Mapping[str, Any], output_dir: Path) -> list[Path]:
    """Every file of the study under ``output_dir``; returns them."""
    pairwise, ratings = annotator_views(manifest)
    (output_dir / "label_studio").mkdir(parents=True, exist_ok=True)
    (output_dir / "csv").mkdir(parents=True, exist_ok=True)
    files = [output_dir / "study.json", output_dir / "system_key.json"]
    files[0].write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    files[1].write_text(json.dumps(key, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    for kind, views, columns in (("pairwise", pairwise, PAIR_COLUMNS), ("ratings", ratings, RATING_COLUMNS)):
        if not views:
            continue
        tasks = output_dir / "label_studio" / f"{kind}_tasks.json"
        tasks.write_text(json.dumps([{"data": view} for view in views], indent=1, ensure_ascii=False) + "\n",
                         encoding="utf-8")  # fmt: skip
        config = output_dir / "label_studio" / f"{kind}_config.xml"
        config.write_text(label_studio_config(kind), encoding="utf-8")
        table = output_dir / "csv" / f"{kind}.csv"
        _write_csv(table, columns, views)
        files += [tasks, config, table]
    return files


def export_study(
    systems: Mapping[str, Any], settings: HumanStudyConfig, output_dir: Path
) -> tuple[dict[str, Any], list[Path]]:
    """Read the systems' predictions, align them, draw the dialogues and write the study; (manifest, files)."""
    sources = parse_systems(systems)
    records = {}
    for source in sources:
        with user_errors_from():  # a system missing from a multi-system release, an unreadable block
            loaded = load_predictions(source.path, source.system, mb_to_bytes(settings.max_file_mb))
        records[source.name] = loaded.records
    aligned = align_systems(records)
    if not aligned:
        listed = ", ".join(f"{s.name} ({len(records[s.name])})" for s in sources)
        raise ConfigError(f"the systems share no example (same context and gold reply): {listed}; "
                          "give prediction files of the same test set")  # fmt: skip
    manifest, opaque = build_study(aligned, [s.name for s in sources], settings)
    key = {
        "format": STUDY_FORMAT,
        "systems": {opaque[s.name]: {"name": s.name, "file": str(s.path), "system": s.system} for s in sources},
        "shared_examples": len(aligned),
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    return manifest, write_study(manifest, key, output_dir)
