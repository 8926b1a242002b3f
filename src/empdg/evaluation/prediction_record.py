"""The record every prediction-file reader produces, and the helpers the readers share.

Its own module so that the EmpDG-release reader and the peer-release readers (MoEL, MIME, KEMP) can both use it
without importing each other.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PredictionRecord", "parse_list", "where"]

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
