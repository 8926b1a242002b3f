"""Reader for the official EmpatheticDialogues CSV files (train/valid/test.csv).

The official files are not RFC-4180 CSV: commas inside text are written ``_comma_`` and some
rows carry extra trailing fields, so (like ParlAI) each line is split on every comma and only
the first eight fields are used.  Unreadable rows are counted and skipped, never fatal.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from empdg.data.conversation import EMOTION_TO_ID, SPLITS, Conversation
from empdg.data.text import restore_commas

logger = logging.getLogger(__name__)

HEADER: tuple[str, ...] = (
    "conv_id", "utterance_idx", "context", "prompt", "speaker_idx", "utterance", "selfeval", "tags",
)
N_FIELDS = len(HEADER)
#: How many skipped rows the warning and the report quote by line number.
MAX_EXAMPLES = 5


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


def read_ed_csv(path: Path) -> tuple[list[Conversation], ReadReport]:
    """Read one official ED CSV file into conversations, in first-appearance order."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(_missing_message([path], path.parent))
    text = path.read_bytes().decode("utf-8-sig", errors="replace")
    report = ReadReport(path=path)
    rows: dict[str, list[tuple[int, str]]] = {}
    heads: dict[str, tuple[str, str]] = {}
    # Split on "\n" only: a stray "\r" inside a field must not start a new row.
    for line_no, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip() or (line_no == 1 and line.startswith("conv_id,")):
            continue
        report.rows += 1
        fields = line.split(",")
        parsed = _parse_row(fields)
        if len(parsed) == 2:
            report.skip(line_no, *parsed)
            continue
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
    if not report.skipped_rows:
        return
    counts = ", ".join(f"{kind}: {n}" for kind, n in report.skipped_reasons.items())
    where = "; ".join(f"line {n} ({reason})" for n, reason in report.skipped_examples)
    warnings.warn(
        f"{report.path}: skipped {report.skipped_rows} of {report.rows} rows that could not be read "
        f"[{counts}]; first: {where}",
        EDFormatWarning,
        stacklevel=3,
    )


def load_ed_splits(root: Path) -> tuple[dict[str, list[Conversation]], dict[str, ReadReport]]:
    """Read ``train/valid/test.csv`` from ``root``; all three must exist before any is read."""
    root = Path(root)
    paths = {split: root / f"{split}.csv" for split in SPLITS}
    missing = [p for p in paths.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(_missing_message(missing, root))
    data: dict[str, list[Conversation]] = {}
    reports: dict[str, ReadReport] = {}
    for split, path in paths.items():
        data[split], reports[split] = read_ed_csv(path)
        logger.info("%s: %d conversations from %d rows (%d skipped)", path,
                    reports[split].conversations, reports[split].rows, reports[split].skipped_rows)
    return data, reports
