"""Reader for the official EmpatheticDialogues CSV files (train/valid/test.csv).

The official files are not RFC-4180 CSV: commas inside text are written ``_comma_`` and some
rows carry extra trailing fields, so (like ParlAI) each line is split on every comma and only
the first eight fields are used.  Unreadable rows are counted and skipped, never fatal.
Bytes that are not UTF-8 are removed from their row (the row is kept: dropping a turn would shift
the speaker/listener alternation of the rest of its conversation) and counted in the same warning,
so no U+FFFD replacement character reaches the vocabulary unnoticed.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from empdg.data.conversation import EMOTION_TO_ID, SPLITS, Conversation
from empdg.data.errors import MissingDataError, check_readable_dir, unreadable
from empdg.data.text import restore_commas

logger = logging.getLogger(__name__)

HEADER: tuple[str, ...] = (
    "conv_id", "utterance_idx", "context", "prompt", "speaker_idx", "utterance", "selfeval", "tags",
)
N_FIELDS = len(HEADER)
#: How many skipped rows the warning and the report quote by line number.
MAX_EXAMPLES = 5
_BOM = b"\xef\xbb\xbf"
_REPLACEMENT = "\ufffd"


class EDFormatWarning(UserWarning):
    """Rows of an ED CSV file were skipped because they could not be read."""


@dataclass
class ReadReport:
    """What happened while reading one file, so callers can log or assert on it."""

    path: Path
    rows: int = 0
    conversations: int = 0
    skipped_rows: int = 0
    extra_field_rows: int = 0
    skipped_examples: list[tuple[int, str]] = field(default_factory=list)
    skipped_reasons: dict[str, int] = field(default_factory=dict)
    #: rows kept after removing bytes that are not UTF-8 (or literal U+FFFD characters)
    repaired_rows: int = 0
    repaired_lines: list[int] = field(default_factory=list)

    def repair(self, line_no: int) -> None:
        """Count a row kept with its undecodable bytes removed; keep the first few line numbers."""
        self.repaired_rows += 1
        if len(self.repaired_lines) < MAX_EXAMPLES:
            self.repaired_lines.append(line_no)

    def skip(self, line_no: int, kind: str, detail: str) -> None:
        """Count a skipped row under ``kind``; keep the first few as (line, reason) examples."""
        self.skipped_rows += 1
        self.skipped_reasons[kind] = self.skipped_reasons.get(kind, 0) + 1
        if len(self.skipped_examples) < MAX_EXAMPLES:
            self.skipped_examples.append((line_no, f"{kind}: {detail}" if detail else kind))


def _missing_message(missing: list[Path], root: Path) -> str:
    names = ", ".join(f"{split}.csv" for split in SPLITS)
    listed = ", ".join(str(p) for p in missing)
    return (
        f"EmpatheticDialogues file(s) not found: {listed}. Expected {names} in {root}. "
        f"Set data.root=/path/to/empatheticdialogues (the folder holding {names}) "
        "or let the downloader fetch the official archive into data.root."
    )


_Row = tuple[str, int, str, str, str]


def _parse_row(fields: list[str]) -> _Row | tuple[str, str]:
    """``(conv_id, idx, emotion, situation, utterance)`` or ``(kind, detail)`` of the problem."""
    if len(fields) < N_FIELDS:
        return "too few fields", f"{len(fields)} < {N_FIELDS}"
    conv_id, idx_text, emotion, prompt, _speaker, utterance = (f.strip() for f in fields[:6])
    try:
        idx = int(idx_text)
    except ValueError:
        return "non-integer utterance_idx", repr(idx_text[:20])
    emotion = emotion.lower()
    if emotion not in EMOTION_TO_ID:
        return "unknown emotion label", repr(emotion[:30])
    utterance = restore_commas(utterance).strip()
    if not utterance:
        return "empty utterance", ""
    if not conv_id:
        return "empty conv_id", ""
    return conv_id, idx, emotion, restore_commas(prompt).strip(), utterance


def read_csv_bytes(path: Path) -> bytes:
    """The bytes of a data file; an ``OSError`` (permission denied, a folder, ...) becomes a
    :class:`~empdg.data.errors.DataError` naming the file instead of a raw traceback."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        raise
    except OSError as err:
        raise unreadable(Path(path), err) from None


def _decode_lines(data: bytes) -> tuple[list[str], set[int]]:
    """Decode and split on ``\\n``; return the lines and the 1-based numbers of repaired ones.

    Undecodable bytes (and literal U+FFFD) are removed rather than replaced: a replacement
    character would otherwise become a token of its own, or glue into words, in the vocabulary.
    """
    if data.startswith(_BOM):
        data = data[len(_BOM):]
    text = data.decode("utf-8", errors="replace")
    lines = text.split("\n")
    if _REPLACEMENT not in text:  # the normal case: nothing to scan line by line
        return lines, set()
    repaired = {n for n, line in enumerate(lines, start=1) if _REPLACEMENT in line}
    for n in repaired:
        lines[n - 1] = lines[n - 1].replace(_REPLACEMENT, "")
    return lines, repaired


def read_ed_csv(path: Path) -> tuple[list[Conversation], ReadReport]:
    """Read one official ED CSV file into conversations, in first-appearance order."""
    path = Path(path)
    check_readable_dir(path.parent)
    if not path.is_file():
        raise MissingDataError(_missing_message([path], path.parent))
    lines, repaired = _decode_lines(read_csv_bytes(path))
    report = ReadReport(path=path)
    rows: dict[str, list[tuple[int, str]]] = {}
    heads: dict[str, tuple[str, str]] = {}
    # Split on "\n" only: a stray "\r" inside a field must not start a new row.
    for line_no, line in enumerate(lines, start=1):
        line = line.rstrip("\r")
        if not line.strip() or (line_no == 1 and line.startswith(HEADER[0] + ",")):
            continue
        report.rows += 1
        fields = line.split(",")
        parsed = _parse_row(fields)
        if len(parsed) == 2:
            report.skip(line_no, *parsed)
            continue
        if line_no in repaired:
            report.repair(line_no)
        if len(fields) > N_FIELDS:
            report.extra_field_rows += 1
        conv_id, idx, emotion, situation, utterance = parsed  # type: ignore[misc]
        heads.setdefault(conv_id, (emotion, situation))
        rows.setdefault(conv_id, []).append((idx, utterance))

    conversations = []
    for conv_id, turns in rows.items():
        emotion, situation = heads[conv_id]
        turns.sort(key=lambda turn: turn[0])
        conversations.append(Conversation(conv_id, emotion, situation, [u for _, u in turns]))
    report.conversations = len(conversations)
    _warn_skipped(report)
    return conversations, report


def _warn_skipped(report: ReadReport) -> None:
    """One warning per file, so a broken file is visible without flooding the log."""
    if report.extra_field_rows:
        logger.info("%s: %d rows had extra trailing fields (first 8 used)",
                    report.path, report.extra_field_rows)
    parts = []
    if report.skipped_rows:
        counts = ", ".join(f"{kind}: {n}" for kind, n in report.skipped_reasons.items())
        where = "; ".join(f"line {n} ({reason})" for n, reason in report.skipped_examples)
        parts.append(f"skipped {report.skipped_rows} of {report.rows} rows that could not be read "
                     f"[{counts}]; first: {where}")
    if report.repaired_rows:
        lines = ", ".join(str(n) for n in report.repaired_lines)
        parts.append(f"kept {report.repaired_rows} of {report.rows} rows with invalid UTF-8 bytes "
                     f"(or U+FFFD characters), which were removed from the text; first: line(s) {lines}")
    if parts:
        warnings.warn(f"{report.path}: " + "; ".join(parts), EDFormatWarning, stacklevel=3)


def load_ed_splits(root: Path) -> tuple[dict[str, list[Conversation]], dict[str, ReadReport]]:
    """Read ``train/valid/test.csv`` from ``root``; all three must exist before any is read."""
    root = Path(root)
    check_readable_dir(root)
    paths = {split: root / f"{split}.csv" for split in SPLITS}
    missing = [p for p in paths.values() if not p.is_file()]
    if missing:
        raise MissingDataError(_missing_message(missing, root))
    data: dict[str, list[Conversation]] = {}
    reports: dict[str, ReadReport] = {}
    for split, path in paths.items():
        data[split], reports[split] = read_ed_csv(path)
        logger.info("%s: %d conversations from %d rows (%d skipped)", path,
                    reports[split].conversations, reports[split].rows, reports[split].skipped_rows)
    return data, reports
