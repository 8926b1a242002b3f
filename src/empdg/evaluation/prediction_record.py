"""The record every prediction-file reader produces, and the helpers the readers share.

Its own module so that the EmpDG-release reader and the peer-release readers (MoEL, MIME, KEMP) can both use it
without importing each other.
"""

from __future__ import annotations

import ast
import io
import re
from dataclasses import dataclass
from pathlib import Path

from empdg.data.file_schema import MB, read_text_bounded

__all__ = ["DEFAULT_MAX_BYTES", "MAX_FILE_SETTING", "PredictionRecord", "parse_list", "read_lines", "where"]

#: ``evaluate.max_file_mb``'s default in bytes: the published release files are 0.7 to 3.3 MB and a full ED test
#: set's predictions.jsonl a few MB; a file far larger is a mistake, and reading it would take minutes and GBs
DEFAULT_MAX_BYTES = 64 * MB
MAX_FILE_SETTING = "evaluate.max_file_mb"

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


def where(path: Path, lineno: int) -> str:
    """``file:line``, the prefix of every parse error."""
    return f"{path}:{lineno}"


def read_lines(path: Path, max_bytes: int | None = DEFAULT_MAX_BYTES) -> list[str]:
    """The lines of a prediction file, as ``open()`` iterates them (universal newlines), after the checks every
    prediction reader shares: the size (refused over ``max_bytes``, naming :data:`MAX_FILE_SETTING`) and UTF-8
    (the error names the file and byte); :class:`~empdg.data.errors.InvalidFileError` otherwise."""
    text = read_text_bounded(path, max_bytes=max_bytes, what="prediction file", setting=MAX_FILE_SETTING)
    return io.StringIO(text, newline=None).readlines()


def parse_list(value: str, path: Path, lineno: int) -> list[str]:
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
    raise ValueError(f"{where(path, lineno)}: expected a python list of strings, got {value[:80]!r}")
