"""Read and write prediction files: the EmpDG release block format and our own JSONL; read the MoEL, MIME and
KEMP releases too (:mod:`empdg.evaluation.peer_release_formats`).

The release formats let us score the published outputs of EmpDG, its baselines and its peers with exactly the
same code as our own predictions, which is the only way to check our metric implementation against the papers'
numbers. :func:`load_predictions` tells the format from the file's content, never from its name.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from empdg.data.file_schema import invalid, load_json_bounded, validate
from empdg.evaluation.peer_release_formats import LAYOUTS, SystemChoiceError, choose_system, read_peer_file
from empdg.evaluation.prediction_record import DEFAULT_MAX_BYTES, PredictionRecord, parse_list, read_lines, where

__all__ = [
    "FORMATS",
    "PredictionFile",
    "PredictionRecord",
    "SystemChoiceError",
    "detect_format",
    "load_predictions",
    "read_jsonl",
    "read_predictions",
    "read_release_file",
    "write_jsonl",
    "write_release_file",
]

# Release keys in the order they are written; `Greedy` is MoEL's name for `Pred`.
_LIST_KEYS = {"Context": "context", "Emotion_context": "emotion_context", "Feedback": "feedback"}
_PRED_KEYS = ("Pred", "Greedy")
_KNOWN_KEYS = {"emotion", "Ref", *_LIST_KEYS, *_PRED_KEYS}


def _record_from_block(block: dict[str, str], path: Path, start: int, lines: dict[str, int]) -> PredictionRecord:
    pred_keys = [key for key in _PRED_KEYS if key in block]
    missing = [key for key in ("Context", "Ref") if key not in block] + ([] if pred_keys else ["Pred"])
    if missing:
        raise ValueError(f"{where(path, start)}: block lacks {', '.join(missing)} line(s)")
    if len(pred_keys) > 1:
        raise ValueError(f"{where(path, start)}: block has both Pred and Greedy lines")
    lists = {
        field: parse_list(block[key], path, lines[key]) if key in block else None for key, field in _LIST_KEYS.items()
    }
    return PredictionRecord(emotion=block["emotion"], pred=block[pred_keys[0]], ref=block["Ref"], **lists)


def read_release_file(
    path: str | Path, drop_duplicates: bool = True, max_bytes: int | None = DEFAULT_MAX_BYTES
) -> list[PredictionRecord]:
    """Parse a release ``pred_*.txt`` file into records, in file order.

    With ``drop_duplicates`` a block identical to the one before it is dropped: the MoEL release is
    described as repeating its first block, and a duplicated example would skew corpus Distinct-n.
    ``max_bytes``: see :func:`~empdg.evaluation.prediction_record.read_lines`.
    """
    path = Path(path)
    blocks: list[tuple[int, dict[str, str], dict[str, int]]] = []
    for lineno, raw in enumerate(read_lines(path, max_bytes), start=1):
        line = raw.strip()
        if not line:
            continue
        key, sep, value = line.partition(":")
        if not sep or key not in _KNOWN_KEYS:
            raise ValueError(f"{where(path, lineno)}: not a release-format line: {line[:80]!r}")
        if key == "emotion":
            blocks.append((lineno, {}, {}))
        elif not blocks:
            raise ValueError(f"{where(path, lineno)}: {key} line before the first 'emotion:' line")
        _, block, lines = blocks[-1]
        if key in block:
            raise ValueError(f"{where(path, lineno)}: second {key} line in one block")
        block[key] = value.strip()
        lines[key] = lineno
    records: list[PredictionRecord] = []
    dropped: list[int] = []
    for start, block, lines in blocks:
        record = _record_from_block(block, path, start, lines)
        if drop_duplicates and records and record == records[-1]:
            dropped.append(start)
            continue
        records.append(record)
    if dropped:
        lines_text = ", ".join(map(str, dropped[:5])) + (", ..." if len(dropped) > 5 else "")
        warnings.warn(
            f"{path}: dropped {len(dropped)} block(s) identical to the block before them (line(s) {lines_text})",
            stacklevel=2,
        )
    return records


def write_release_file(path: str | Path, records: Iterable[PredictionRecord], pred_key: str = "Pred") -> None:
    """Write records in the release block format (``pred_key='Greedy'`` reproduces the MoEL file)."""
    if pred_key not in _PRED_KEYS:
        raise ValueError(f"pred_key must be one of {_PRED_KEYS}, got {pred_key!r}")
    with Path(path).open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(f"emotion:{record.emotion}\n")
            handle.write(f"Context:{record.context!r}\n")
            if record.emotion_context is not None:
                handle.write(f"Emotion_context:{record.emotion_context!r}\n")
            if record.feedback is not None:
                handle.write(f"Feedback:{record.feedback!r}\n")
            handle.write(f"{pred_key}:{record.pred}\n")
            handle.write(f"Ref:{record.ref}\n")


_FIELDS = {field.name for field in dataclasses.fields(PredictionRecord)}
_REQUIRED = ("emotion", "context", "pred", "ref")


_LINE_MAX_DEPTH = 16  # a line nests 2 levels (an object holding lists)


@functools.cache
def _line_schema() -> Any:
    """The keys a JSONL line may have and their types: :class:`PredictionRecord`'s fields, then the per-example
    scores ``predictions.jsonl`` adds (:mod:`empdg.evaluation.scored_examples`); other keys are ignored."""
    from typing import Annotated

    from pydantic import Field
    from typing_extensions import TypedDict

    optional_list, optional_str = list[str] | None, str | None
    fields = {
        "emotion": str, "context": list[str], "pred": str, "ref": str, "emotion_context": optional_list,
        "feedback": optional_list, "example_id": optional_str, "predicted_emotion": optional_str,
        "has_feedback": bool | None, "nll_sum": float | None, "n_tokens": Annotated[int, Field(ge=0)] | None,
        "sim_reference": Annotated[float, Field(ge=-1.001, le=1.001)] | None,
        "sim_context": Annotated[float, Field(ge=-1.001, le=1.001)] | None,
        "reply_emotion": optional_str, "reference_emotion": optional_str,
    }  # fmt: skip
    return TypedDict("prediction_line", fields, total=False)  # noqa: UP013 (keys computed, not class syntax)


def json_objects(
    path: str | Path, required: Iterable[str] = _REQUIRED, max_bytes: int | None = DEFAULT_MAX_BYTES
) -> Iterator[dict[str, Any]]:
    """Each non-empty line of a JSONL file as an object holding ``required``, every known key of the right type;
    :class:`~empdg.data.errors.InvalidFileError` naming file, line and key otherwise (``max_bytes``: see
    :func:`~empdg.evaluation.prediction_record.read_lines`)."""
    path = Path(path)
    for lineno, raw in enumerate(read_lines(path, max_bytes), start=1):
        if not raw.strip():
            continue
        obj = load_json_bounded(raw, path=path, line=lineno, max_depth=_LINE_MAX_DEPTH, what="line")
        if not isinstance(obj, dict):
            raise invalid(path, f"expected a JSON object, found {type(obj).__name__}", line=lineno)
        missing = [key for key in required if key not in obj]
        if missing:
            raise invalid(path, f"missing key(s) {', '.join(missing)}", line=lineno)
        validate(obj, _line_schema(), path=path, line=lineno)
        yield obj


def read_jsonl(path: str | Path, max_bytes: int | None = DEFAULT_MAX_BYTES) -> list[PredictionRecord]:
    """Read one JSON object per line; unknown keys are ignored so newer files stay readable."""
    return [
        PredictionRecord(**{key: obj[key] for key in _FIELDS if key in obj})
        for obj in json_objects(path, max_bytes=max_bytes)
    ]


def write_jsonl(path: str | Path, records: Iterable[PredictionRecord]) -> None:
    """Write one JSON object per record, omitting fields that are None."""
    with Path(path).open("w", encoding="utf-8") as handle:
        for record in records:
            obj = {key: value for key, value in dataclasses.asdict(record).items() if value is not None}
            handle.write(json.dumps(obj, ensure_ascii=False) + "\n")


#: Every format :func:`load_predictions` reads, as :func:`detect_format` names them.
FORMATS = ("jsonl", "empdg", *LAYOUTS)
_FORMAT_TITLES = {"jsonl": "JSONL", "empdg": "EmpDG release format"}


@dataclass
class PredictionFile:
    """What a prediction file held: its format, the systems in it, the one read and that system's records."""

    format: str
    systems: tuple[str, ...]  # empty for the formats that name no system (JSONL, EmpDG release)
    system: str | None
    records: list[PredictionRecord]


def _first_block(path: Path, limit: int = 20, max_bytes: int | None = DEFAULT_MAX_BYTES) -> list[tuple[int, str]]:
    """Up to ``limit`` non-empty lines from the top: enough for the headers and the first block of any format."""
    lines: list[tuple[int, str]] = []
    for lineno, raw in enumerate(read_lines(path, max_bytes), start=1):
        if raw.strip():
            lines.append((lineno, raw.strip()))
        if len(lines) == limit:
            break
    return lines


def detect_format(path: str | Path, max_bytes: int | None = DEFAULT_MAX_BYTES) -> str:
    """One of :data:`FORMATS`, from the first lines of the file (its name plays no part)."""
    path = Path(path)
    lines = _first_block(path, max_bytes=max_bytes)
    if not lines:
        raise ValueError(f"{path}: empty prediction file")
    lineno, first = lines[0]
    keys = {line.partition(":")[0] for _, line in lines if ":" in line}
    if first.startswith("{"):
        return "jsonl"
    if first.startswith(("#", "EVAL\t")) or {"Topk", "Beam"} & keys or (first.startswith("emotion:") and "\t" in first):
        return "mime"
    if first.startswith("emotion:"):
        return "empdg"
    if first.startswith("Emotion:") and {"Concept", "Pred"} & keys:
        return "kemp"
    if first.startswith("Emotion:") and {"ref", *LAYOUTS["moel"].systems} & keys:
        return "moel"
    raise ValueError(
        f"{where(path, lineno)}: not a known prediction format (JSONL objects, or the EmpDG, MoEL, MIME or KEMP "
        f"release blocks, which open with an 'emotion:' or 'Emotion:' line): {first[:80]!r}"
    )


def load_predictions(
    path: str | Path, system: str | None = None, max_bytes: int | None = DEFAULT_MAX_BYTES
) -> PredictionFile:
    """Read a prediction file of any of :data:`FORMATS`; ``system`` picks one system of a multi-system file
    (MoEL, MIME) and may be None when the file holds one (:class:`SystemChoiceError` otherwise). A file over
    ``max_bytes`` (``evaluate.max_file_mb``), not UTF-8, or with a JSONL line of the wrong shape is an
    :class:`~empdg.data.errors.InvalidFileError` naming the file (and line)."""
    path = Path(path)
    kind = detect_format(path, max_bytes)
    if kind in LAYOUTS:
        layout = LAYOUTS[kind]
        records = read_peer_file(path, layout, system, max_bytes)
        return PredictionFile(kind, layout.system_names, system or layout.system_names[0], records)
    choose_system((), system, path, _FORMAT_TITLES[kind])  # these formats name no system: none can be chosen
    records = read_jsonl(path, max_bytes) if kind == "jsonl" else read_release_file(path, max_bytes=max_bytes)
    return PredictionFile(kind, (), None, records)


def read_predictions(
    path: str | Path, system: str | None = None, max_bytes: int | None = DEFAULT_MAX_BYTES
) -> list[PredictionRecord]:
    """The records of a prediction file of any format (see :func:`load_predictions`)."""
    return load_predictions(path, system, max_bytes).records
