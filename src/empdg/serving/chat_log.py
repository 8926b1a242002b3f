"""Opted-in chat logs (``chat.log.enabled=true``): redacted turns, pseudonymous sessions, retention, analytics.

One JSONL file per session in ``chat.log.dir``, named by the session's id: 16 random hex digits
(:func:`secrets.token_hex`), drawn at chat start and at ``/reset``, never derived from the user or the machine.
A record is one turn::

    {"session": "9f2c...", "turn": 1, "time": "2026-12-04T23:40:00Z", "user": "my name is [NAME] ...",
     "reply": "...", "emotion": "sad", "fallback": null}

``user`` and ``reply`` pass through :func:`empdg.serving.redaction.redact` before the line is written (the reply
too: a copying decoder can repeat what the user typed). ``emotion`` is the model's top emotion for the user's turn
(null without an emotion classifier); ``fallback`` the reason the editorial fallback answered (every candidate
was empty or degenerate), else null. Records older than ``retention_days`` are deleted whenever a log is opened.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from empdg.config.schema import ChatLogConfig, typed
from empdg.data.errors import InvalidFileError
from empdg.errors import ConfigError, MissingFileError

SESSION_ID = re.compile(r"^[0-9a-f]{16}$")
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_FIELDS = {"session": str, "turn": int, "time": str, "user": str, "reply": str}
_TYPE_NAMES = {str: "a string", int: "an integer"}


def new_session_id() -> str:
    """64 random bits: nothing about the user, the machine or the time can be read back from it."""
    return secrets.token_hex(8)


def _timestamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime(_TIME_FORMAT)


def _seconds(stamp: str) -> float:
    return datetime.strptime(stamp, _TIME_FORMAT).replace(tzinfo=timezone.utc).timestamp()


class ChatLog:
    """The log folder; :meth:`record` appends one redacted turn to the current session's file."""

    def __init__(self, folder: Path | str, retention_days: float, clock: Callable[[], float] = time.time) -> None:
        self.folder = Path(folder).expanduser()
        self.retention_s = float(retention_days) * 86400.0
        self.clock = clock
        self.session = new_session_id()
        self.turns = 0
        self.expired = 0

    @classmethod
    def open(
        cls, settings: Mapping[str, Any] | ChatLogConfig, clock: Callable[[], float] = time.time, create: bool = True
    ) -> ChatLog:
        """The folder of ``chat.log.*`` (made if missing and ``create``, private to the user), expired records
        deleted (their number in ``expired``)."""
        config = settings if isinstance(settings, ChatLogConfig) else typed(ChatLogConfig, settings, "chat.log")
        log = cls(config.dir, config.retention_days, clock)
        if not create and not log.folder.is_dir():
            raise MissingFileError(f"there is no chat log folder {log.folder}; pass chat.log.dir=<the chat's folder>")
        try:
            log.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            probe = log.folder / f".{log.session}.probe"
            probe.touch(mode=0o600)
            probe.unlink()
        except OSError as error:
            raise ConfigError(
                f"chat.log.dir={config.dir} cannot be written ({error.strerror or error}); "
                "pass chat.log.dir=<a folder you can write>"
            ) from None
        log.expired = log.expire()
        if create:  # the chat: the redactor loads now, not at the first turn
            from empdg.serving.redaction import ready

            ready()
        return log

    def path(self, session: str) -> Path:
        return self.folder / f"{session}.jsonl"

    def new_session(self) -> str:
        self.session, self.turns = new_session_id(), 0
        return self.session

    def record(self, user: str, reply: str, emotion: str | None, fallback: str | None) -> dict[str, Any]:
        """Write one turn of the current session, redacted; returns the record as written."""
        from empdg.serving.redaction import redact

        self.turns += 1
        record = {
            "session": self.session,
            "turn": self.turns,
            "time": _timestamp(self.clock()),
            "user": redact(user),
            "reply": redact(reply),
            "emotion": emotion,
            "fallback": fallback,
        }
        line = json.dumps(record, ensure_ascii=False) + "\n"
        descriptor = os.open(self.path(self.session), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(descriptor, "a", encoding="utf-8") as file:
            file.write(line)
        return record

    # -- reading, retention, deletion ---------------------------------------------------------------------
    def files(self) -> list[Path]:
        return sorted(p for p in self.folder.glob("*.jsonl") if SESSION_ID.match(p.stem))

    def read(self, path: Path) -> list[dict[str, Any]]:
        """The records of one session file; a line that is not one names the file and line."""
        records = []
        with path.open(encoding="utf-8", errors="replace") as file:
            for number, line in enumerate(file, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    raise InvalidFileError(path, f"not a JSON record ({error.msg})", number) from None
                problem = _record_problem(record)
                if problem:
                    raise InvalidFileError(path, problem, number)
                records.append(record)
        return records

    def sessions(self) -> dict[str, list[dict[str, Any]]]:
        return {path.stem: self.read(path) for path in self.files()}

    def expire(self) -> int:
        """Delete the records older than the retention period (a file left empty goes); the number deleted."""
        cutoff = self.clock() - self.retention_s
        deleted = 0
        for path in self.files():
            records = self.read(path)
            kept = [r for r in records if _seconds(r["time"]) >= cutoff]
            deleted += len(records) - len(kept)
            if not kept:
                path.unlink()
            elif len(kept) < len(records):
                fresh = path.with_suffix(".tmp")
                fresh.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept), encoding="utf-8")
                os.chmod(fresh, 0o600)
                fresh.replace(path)
        return deleted

    def delete(self, session: str) -> int:
        """Delete every record of ``session``; the number deleted."""
        if not SESSION_ID.match(session or ""):
            raise ConfigError(f"session={session!r} is not a session id (16 hex digits, as the chat printed it)")
        path = self.path(session)
        if not path.is_file():
            raise MissingFileError(f"no records of session {session} in {self.folder}; pass chat.log.dir=<its folder>")
        count = len(self.read(path))
        path.unlink()
        return count


def _record_problem(record: Any) -> str | None:
    if not isinstance(record, dict):
        return "a record must be a JSON object"
    for key, kind in _FIELDS.items():
        if not isinstance(record.get(key), kind) or isinstance(record.get(key), bool):
            return f"'{key}' must be {_TYPE_NAMES[kind]}"
    try:
        _seconds(record["time"])
    except ValueError:
        return f"'time' must read like 2026-01-31T12:00:00Z, not {record['time']!r}"
    for key in ("emotion", "fallback"):
        if record.get(key) is not None and not isinstance(record[key], str):
            return f"'{key}' must be a string or null"
    return None


# -- analytics ---------------------------------------------------------------------------------------------
@dataclass
class SessionSummary:
    """One session: its turns (a user message and the reply), fallbacks and the user's emotion per turn."""

    session: str
    started: str
    turns: int
    fallbacks: int
    emotions: list[str | None] = field(default_factory=list)
    fallback_reasons: list[str] = field(default_factory=list)  # why each fallback answered ("empty", ...)


def summarize(sessions: Mapping[str, list[Mapping[str, Any]]]) -> list[SessionSummary]:
    """Per session, oldest first."""
    found = []
    for session, records in sessions.items():
        if not records:
            continue
        ordered = sorted(records, key=lambda r: r["turn"])
        reasons = [r["fallback"] for r in ordered if r.get("fallback") is not None]
        emotions = [r.get("emotion") for r in ordered]
        found.append(SessionSummary(session, ordered[0]["time"], len(ordered), len(reasons), emotions, reasons))
    return sorted(found, key=lambda s: (s.started, s.session))


@dataclass(frozen=True)
class Totals:
    sessions: int
    turns: int
    cps: float  # conversation-turns per session (XiaoIce's CPS)
    fallback_rate: float  # share of turns the editorial fallback answered


def totals(summaries: list[SessionSummary]) -> Totals:
    turns = sum(s.turns for s in summaries)
    fallbacks = sum(s.fallbacks for s in summaries)
    return Totals(
        len(summaries),
        turns,
        turns / len(summaries) if summaries else 0.0,
        fallbacks / turns if turns else 0.0,
    )


def report(summaries: list[SessionSummary], folder: Path | str) -> str:
    """The Markdown report ``python -m empdg.chat_logs`` prints."""
    total = totals(summaries)
    lines = [
        f"# Chat sessions in {folder}",
        "",
        f"sessions: {total.sessions}, turns: {total.turns}, CPS (turns per session): {total.cps:.2f}, "
        f"fallback rate: {total.fallback_rate:.1%}",
    ]
    reasons = Counter(part for s in summaries for reason in s.fallback_reasons for part in reason.split("; "))
    if reasons:  # a fallback may have several reasons (one per rejected candidate kind)
        lines.append("fallbacks by reason: " + ", ".join(f"{reason} {n}" for reason, n in reasons.most_common()))
    lines += [
        "",
        "| session | started (UTC) | turns | fallbacks | emotion per user turn |",
        "| --- | --- | --- | --- | --- |",
    ]
    for s in summaries:
        trajectory = " → ".join(e or "?" for e in s.emotions)
        lines.append(f"| {s.session} | {s.started} | {s.turns} | {s.fallbacks} | {trajectory} |")
    return "\n".join(lines)
