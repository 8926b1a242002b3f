"""Read and write prediction files: the EmpDG release block format and our own JSONL.

The release format lets us score the published EmpDG/MoEL/baseline outputs with exactly the same code as our
own predictions, which is the only way to check our metric implementation against the paper's numbers.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "PredictionRecord",
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
_ITEM_SEPARATOR = re.compile(r"['\"], ['\"]")


@dataclass
class PredictionRecord:
    """One generated response with its gold reference and dialogue context."""

    emotion: str
    context: list[str]
    pred: str
    ref: str
    emotion_context: list[str] | None = None
    feedback: list[str] | None = None
    example_id: str | None = None
    predicted_emotion: str | None = None


def _where(path: Path, lineno: int) -> str:
    return f"{path}:{lineno}"


def _parse_list(value: str, path: Path, lineno: int) -> list[str]:
    """Parse a ``[python list]`` of strings.

    Falls back to splitting on the ``', '`` separators, so that an unescaped quote inside an utterance
    (which breaks ``ast.literal_eval``) does not make a whole release file unreadable.
    """
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        parsed = None
    if isinstance(parsed, (list, tuple)) and all(isinstance(item, str) for item in parsed):
        return list(parsed)
    inner = value[1:-1].strip() if value.startswith("[") and value.endswith("]") else None
    if inner == "":
        return []
    if inner and len(inner) >= 2 and inner[0] in "'\"" and inner[-1] in "'\"":
        return _ITEM_SEPARATOR.split(inner[1:-1])
    raise ValueError(f"{_where(path, lineno)}: expected a python list of strings, got {value[:80]!r}")


def _record_from_block(
    block: dict[str, str], path: Path, start: int, lines: dict[str, int]
) -> PredictionRecord:
    pred_keys = [key for key in _PRED_KEYS if key in block]
    missing = [key for key in ("Context", "Ref") if key not in block] + ([] if pred_keys else ["Pred"])
    if missing:
        raise ValueError(f"{_where(path, start)}: block lacks {', '.join(missing)} line(s)")
    if len(pred_keys) > 1:
        raise ValueError(f"{_where(path, start)}: block has both Pred and Greedy lines")
    lists = {
        field: _parse_list(block[key], path, lines[key]) if key in block else None
        for key, field in _LIST_KEYS.items()
    }
    return PredictionRecord(emotion=block["emotion"], pred=block[pred_keys[0]], ref=block["Ref"], **lists)


def read_release_file(path: str | Path, drop_duplicates: bool = True) -> list[PredictionRecord]:
    """Parse a release ``pred_*.txt`` file into records, in file order.

    With ``drop_duplicates`` a block identical to the one before it is dropped: the MoEL release is
    described as repeating its first block, and a duplicated example would skew corpus Distinct-n.
    """
    path = Path(path)
    blocks: list[tuple[int, dict[str, str], dict[str, int]]] = []
    with path.open(encoding="utf-8") as handle:
        for lineno, raw in enumerate(handle, start=1):
            line = raw.strip()
            if not line:
                continue
            key, sep, value = line.partition(":")
            if not sep or key not in _KNOWN_KEYS:
                raise ValueError(f"{_where(path, lineno)}: not a release-format line: {line[:80]!r}")
            if key == "emotion":
                blocks.append((lineno, {}, {}))
            elif not blocks:
                raise ValueError(f"{_where(path, lineno)}: {key} line before the first 'emotion:' line")
            _, block, lines = blocks[-1]
            if key in block:
                raise ValueError(f"{_where(path, lineno)}: second {key} line in one block")
            block[key] = value.strip()
            lines[key] = lineno
    records: list[PredictionRecord] = []
    for start, block, lines in blocks:
        record = _record_from_block(block, path, start, lines)
        if drop_duplicates and records and record == records[-1]:
            continue
        records.append(record)
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


def json_objects(path: str | Path, required: Iterable[str] = _REQUIRED) -> Iterator[dict[str, Any]]:
    """Each non-empty line of a JSONL file as an object holding ``required``; errors name file and line."""
    path = Path(path)
    with path.open(encoding="utf-8") as handle:
        for lineno, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as error:
                raise ValueError(f"{_where(path, lineno)}: invalid JSON ({error.msg})") from error
            if not isinstance(obj, dict):
                raise ValueError(f"{_where(path, lineno)}: expected a JSON object")
            missing = [key for key in required if key not in obj]
            if missing:
                raise ValueError(f"{_where(path, lineno)}: missing key(s) {', '.join(missing)}")
            yield obj


def read_jsonl(path: str | Path) -> list[PredictionRecord]:
    """Read one JSON object per line; unknown keys are ignored so newer files stay readable."""
    return [PredictionRecord(**{key: obj[key] for key in _FIELDS if key in obj}) for obj in json_objects(path)]


def write_jsonl(path: str | Path, records: Iterable[PredictionRecord]) -> None:
    """Write one JSON object per record, omitting fields that are None."""
    with Path(path).open("w", encoding="utf-8") as handle:
        for record in records:
            obj = {key: value for key, value in dataclasses.asdict(record).items() if value is not None}
            handle.write(json.dumps(obj, ensure_ascii=False) + "\n")


def read_predictions(path: str | Path) -> list[PredictionRecord]:
    """Read a prediction file, telling JSONL from the release format by its first non-empty line."""
    path = Path(path)
    with path.open(encoding="utf-8") as handle:
        for lineno, raw in enumerate(handle, start=1):
            line = raw.strip()
            if not line:
                continue
            if line.startswith("{"):
                return read_jsonl(path)
            if line.startswith("emotion:"):
                return read_release_file(path)
            raise ValueError(
                f"{_where(path, lineno)}: neither JSONL (a '{{' object) nor release format "
                f"(an 'emotion:' line): {line[:80]!r}"
            )
    raise ValueError(f"{path}: empty prediction file")
