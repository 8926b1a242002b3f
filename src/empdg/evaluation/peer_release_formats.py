"""Readers of the test-set outputs other empathetic-dialogue systems released: MoEL, MIME and KEMP.

Scoring them with our own metric code is what makes our numbers comparable with theirs. Each release writes
one block of ``key:value`` lines per example; they differ in the keys, in how many systems a block holds (MoEL:
four, MIME: three decoders, KEMP: one), in header and separator lines and in the space after the colon. One
:class:`BlockLayout` per release describes that, and one reader parses every layout, strictly: an unknown,
repeated or missing line is an error naming file and line, and no block is dropped.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from empdg.evaluation.prediction_record import DEFAULT_MAX_BYTES, PredictionRecord, parse_list, read_lines, where

__all__ = ["KEMP", "LAYOUTS", "MIME", "MOEL", "BlockLayout", "SystemChoiceError", "choose_system", "read_peer_file"]


class SystemChoiceError(ValueError):
    """The system asked for is not in the file, or a multi-system file was read without naming one."""

    def __init__(self, message: str, choices: Sequence[str]) -> None:
        super().__init__(message)
        self.choices = tuple(choices)


@dataclass(frozen=True)
class BlockLayout:
    """How one release writes an example: the key opening a block, the response key of each system, the rest."""

    format: str  # the name logs and configs use: moel, mime, kemp
    title: str  # the release's name in messages: MoEL, MIME, KEMP
    opener: str  # the key of a block's first line (it holds the gold emotion)
    systems: dict[str, str]  # response key -> system name, in file order
    ref: str = "Ref"
    ignored: tuple[str, ...] = ()  # keys that are read but not scored (KEMP's Concept)
    header: re.Pattern[str] | None = None  # lines allowed before the first block
    separator: re.Pattern[str] | None = None  # a line that ends a block
    tab_fields: bool = False  # the opener line carries tab-separated `name: value` fields (MIME)
    keys: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "keys", frozenset({self.opener, "Context", self.ref, *self.systems, *self.ignored}))

    @property
    def system_names(self) -> tuple[str, ...]:
        return tuple(self.systems.values())


MOEL = BlockLayout(
    "moel",
    "MoEL",
    "Emotion",
    {"trs": "trs", "trs+multitask": "trs+multitask", "MOE": "MOE", "MOE+oracle": "MOE+oracle"},
    "ref",
)
MIME = BlockLayout(
    "mime",
    "MIME",
    "emotion",
    {"Topk": "Topk", "Beam": "Beam", "Greedy": "Greedy"},
    header=re.compile(r"#.*|\S+(\t\S+)+"),  # the comment line, then a tab-separated table of test scores
    separator=re.compile(r"-{3,}"),
    tab_fields=True,
)
KEMP = BlockLayout("kemp", "KEMP", "Emotion", {"Pred": "KEMP"}, ignored=("Concept",))
LAYOUTS = {layout.format: layout for layout in (MOEL, MIME, KEMP)}


def choose_system(systems: Sequence[str], system: str | None, path: Path, what: str) -> str | None:
    """The system to read: ``system`` when the file has it; the only one when ``system`` is None."""
    listed = ", ".join(systems)
    if system is None:
        if len(systems) > 1:
            raise SystemChoiceError(f"{path} ({what}) holds {len(systems)} systems: {listed}; none chosen", systems)
        return systems[0] if systems else None
    if system in systems:
        return system
    if not systems:
        raise SystemChoiceError(f"{path} ({what}) holds one unnamed system; {system!r} cannot be chosen", systems)
    raise SystemChoiceError(f"{path} ({what}) has no system {system!r}; it holds: {listed}", systems)


def _lines(path: Path, layout: BlockLayout, max_bytes: int | None) -> Iterator[tuple[int, str, str]]:
    """``(lineno, key, value)`` of every data line; blank, header (before the first block) and separator lines
    carry no data and are passed over."""
    started = False
    for lineno, raw in enumerate(read_lines(path, max_bytes), start=1):
        line = raw.strip()
        if not line or (layout.separator and layout.separator.fullmatch(line)):
            continue
        key, sep, value = line.partition(":")
        if sep and key in layout.keys:
            started = started or key == layout.opener
            yield lineno, key, value.strip()
        elif not started and layout.header and layout.header.fullmatch(line):
            continue
        else:
            raise ValueError(f"{where(path, lineno)}: not a {layout.title} release line: {line[:80]!r}")


def _blocks(path: Path, layout: BlockLayout, max_bytes: int | None) -> Iterator[tuple[int, dict[str, tuple[int, str]]]]:
    """Each block as ``(first line, {key: (lineno, value)})``, checked for repeated and missing keys."""
    start, block = 0, {}
    for lineno, key, value in _lines(path, layout, max_bytes):
        if key == layout.opener:
            if block:
                yield start, _complete(block, path, start, layout)
            start, block = lineno, {}
        elif not block:
            raise ValueError(f"{where(path, lineno)}: {key} line before the first '{layout.opener}:' line")
        if key in block:
            raise ValueError(f"{where(path, lineno)}: second {key} line in one block (block at line {start})")
        block[key] = (lineno, value)
    if block:
        yield start, _complete(block, path, start, layout)


def _complete(block: dict[str, tuple[int, str]], path: Path, start: int, layout: BlockLayout) -> dict:
    missing = [key for key in ("Context", layout.ref, *layout.systems) if key not in block]
    if missing:
        raise ValueError(f"{where(path, start)}: block lacks {', '.join(missing)} line(s)")
    return block


def _emotions(value: str, layout: BlockLayout, path: Path, lineno: int) -> tuple[str, str | None]:
    """Gold emotion and, in MIME's tab fields (``predicted_emotion: x``), the predicted one."""
    emotion, *fields = value.split("\t") if layout.tab_fields else [value]
    named = {name.strip(): text for name, _, text in (item.partition(":") for item in fields)}
    if not emotion.strip():
        raise ValueError(f"{where(path, lineno)}: empty emotion label")
    predicted = named.get("predicted_emotion")
    return emotion.strip(), predicted.strip() if predicted is not None else None


def read_peer_file(
    path: str | Path, layout: BlockLayout, system: str | None = None, max_bytes: int | None = DEFAULT_MAX_BYTES
) -> list[PredictionRecord]:
    """The records of one system of a peer release file, in file order (``system`` may be None when the file
    holds one system; ``max_bytes``: see :func:`~empdg.evaluation.prediction_record.read_lines`)."""
    path = Path(path)
    chosen = choose_system(layout.system_names, system, path, f"{layout.title} release format")
    key = next(key for key, name in layout.systems.items() if name == chosen)
    records = []
    for _, block in _blocks(path, layout, max_bytes):
        emotion, predicted = _emotions(block[layout.opener][1], layout, path, block[layout.opener][0])
        context_line, context = block["Context"]
        records.append(
            PredictionRecord(
                emotion=emotion,
                context=parse_list(context, path, context_line),
                pred=block[key][1],
                ref=block[layout.ref][1],
                predicted_emotion=predicted,
            )
        )
    return records
