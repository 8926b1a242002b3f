"""Privacy of the chat and the served model: nothing written by default; opted-in logs redacted, expiring, deletable.

Redaction rules use hand-written sentences (one kind per row); the log store and its analytics use a fake clock and
hand-built JSONL files; the chat and the served model run on the session's tiny checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from empdg.data.errors import InvalidFileError
from empdg.errors import ConfigError, MissingFileError
from empdg.serving.chat_log import SESSION_ID, ChatLog, report, summarize, totals
from empdg.serving.redaction import redact

DAY = 86400.0
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8"}
#: a made-up secret the user types: it must not reach any file or log line
MARKER = "quixotic zebrafish 7731"


# -- redaction: one kind per row -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, expected",
    [
        ("write to jane.doe+chat@mail.example.co.uk now", "write to [EMAIL] now"),
        ("call (415) 555-2671 tonight", "call [PHONE] tonight"),  # US national format
        ("my number is +44 20 7946 0958.", "my number is [PHONE]."),  # international format
        ("see https://example.com/a?b=1 please", "see [URL] please"),
        ("card 4111 1111 1111 1111 ok", "card [CARD] ok"),  # Luhn-valid, spaced
        ("card 5500-0000-0000-0004 ok", "card [CARD] ok"),  # Luhn-valid, dashed
        ("from 192.168.1.20 today", "from [IP] today"),
        ("host 2001:db8::8a2e:370:7334 is down", "host [IP] is down"),
        ("my name is Sarah Connor and my friend Bob came", "my name is [NAME] and my friend [NAME] came"),
        ("I told Dr. Patel everything", "I told Dr. [NAME] everything"),
    ],
    ids=["email", "phone-national", "phone-international", "url", "card-spaced", "card-dashed", "ipv4", "ipv6",
         "name-after-cue", "name-after-title"],
)  # fmt: skip
def test_redacts_each_kind(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Are you fine now? I hope you feel better, that sounds scary.",
        "My Friend And I went there in 2019, it cost 1500 dollars.",  # capitalised words after a cue that are no name
        "order 4111-1111-1111-1112 was late",  # fails the Luhn check: not a card number
    ],
    ids=["ordinary", "cue-without-name", "luhn-invalid"],
)
def test_leaves_ordinary_text(text: str) -> None:
    assert redact(text) == text


def test_redaction_logs_nothing(caplog) -> None:
    # Presidio's DEBUG lines list the words around each finding ("Context list is: ..."): its loggers stay quiet
    with caplog.at_level(logging.DEBUG):
        assert redact(f"email {MARKER} me at zed@example.org") == f"email {MARKER} me at [EMAIL]"
    assert [r.getMessage() for r in caplog.records if r.name.startswith("presidio")] == []
    assert MARKER.split()[0] not in caplog.text


# -- the log store ------------------------------------------------------------------------------------------------
class Clock:
    def __init__(self, now: float = 100 * DAY) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def open_log(folder: Path, clock: Clock, retention_days: float = 30) -> ChatLog:
    return ChatLog.open({"enabled": True, "dir": str(folder), "retention_days": retention_days}, clock)


def test_records_are_redacted_before_they_reach_disk(tmp_path: Path) -> None:
    log = open_log(tmp_path / "logs", Clock())
    log.record("mail me: zed@example.org", "ok, zed@example.org noted", "sad", None)
    path = tmp_path / "logs" / f"{log.session}.jsonl"
    written = path.read_text(encoding="utf-8")
    assert "zed@example.org" not in written
    assert json.loads(written)["user"] == "mail me: [EMAIL]" and json.loads(written)["reply"] == "ok, [EMAIL] noted"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # the user's only


def test_session_ids_are_random_not_derived(tmp_path: Path) -> None:
    first, second = open_log(tmp_path, Clock()), open_log(tmp_path, Clock())
    assert SESSION_ID.match(first.session) and first.session != second.session
    before = first.session
    assert first.new_session() != before and first.turns == 0


def test_retention_deletes_old_records_only(tmp_path: Path) -> None:
    clock = Clock(0.0)
    log = open_log(tmp_path, clock)
    old_session = log.session
    log.record("day zero", "reply", None, None)
    mixed = log.new_session()
    log.record("day zero too", "reply", None, None)
    clock.now = 9 * DAY
    log.record("day nine", "reply", None, None)
    clock.now = 10 * DAY
    reopened = open_log(tmp_path, clock, retention_days=5)  # everything before day 5 goes
    assert reopened.expired == 2
    assert not (tmp_path / f"{old_session}.jsonl").exists()
    assert [r["user"] for r in reopened.read(tmp_path / f"{mixed}.jsonl")] == ["day nine"]


def test_delete_removes_one_session_only(tmp_path: Path) -> None:
    log = open_log(tmp_path, Clock())
    kept = log.session
    log.record("one", "reply", None, None)
    gone = log.new_session()
    log.record("two", "reply", None, None)
    log.record("three", "reply", None, None)
    assert log.delete(gone) == 2
    assert sorted(p.stem for p in tmp_path.glob("*.jsonl")) == [kept]
    with pytest.raises(MissingFileError, match="no records of session"):
        log.delete(gone)
    with pytest.raises(ConfigError, match="is not a session id"):
        log.delete("../" + kept)


def write_log(folder: Path, session: str, turns: list[tuple[str | None, str | None]]) -> None:
    """``turns``: (emotion, fallback reason) per turn, a minute apart."""
    lines = [
        json.dumps({"session": session, "turn": i, "time": f"2026-12-01T10:0{i}:00Z", "user": "u", "reply": "r",
                    "emotion": emotion, "fallback": fallback})
        for i, (emotion, fallback) in enumerate(turns, 1)
    ]  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{session}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_analytics_on_a_hand_built_log(tmp_path: Path) -> None:
    write_log(tmp_path, "a" * 16, [("sad", None), ("sad", "empty"), ("anxious", None)])
    write_log(tmp_path, "b" * 16, [("joyful", None), (None, "empty; repeats itself")])
    log = ChatLog(tmp_path, retention_days=10_000, clock=Clock(20_500 * DAY))
    summaries = summarize(log.sessions())
    total = totals(summaries)
    assert (total.sessions, total.turns, total.cps, total.fallback_rate) == (2, 5, 2.5, 0.4)
    assert [(s.session[0], s.turns, s.fallbacks, s.emotions) for s in summaries] == [
        ("a", 3, 1, ["sad", "sad", "anxious"]),
        ("b", 2, 1, ["joyful", None]),  # a model without an emotion classifier records none
    ]
    text = report(summaries, tmp_path)
    assert "CPS (turns per session): 2.50, fallback rate: 40.0%" in text
    assert "fallbacks by reason: empty 2, repeats itself 1" in text
    assert "| sad → sad → anxious |" in text and "| joyful → ? |" in text


def test_a_malformed_log_names_file_and_line(tmp_path: Path) -> None:
    write_log(tmp_path, "c" * 16, [("sad", None)])
    with (tmp_path / f"{'c' * 16}.jsonl").open("a") as file:
        file.write('{"session": "cccc", "turn": "two"}\n')
    with pytest.raises(InvalidFileError, match=r"c{16}\.jsonl:2: 'turn' must be an integer"):
        ChatLog(tmp_path, retention_days=1).sessions()


# -- nothing written by default: the chat and the served model ----------------------------------------------------
def files_holding(root: Path, text: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and text.encode() in p.read_bytes()]


def run_chat(checkpoint: Path, root: Path, lines: list[str], *overrides: str) -> subprocess.CompletedProcess:
    """The chat in a subprocess whose home, temporary folder, working folder and MLflow store are under ``root``."""
    cwd = root / "cwd"
    for folder in (cwd, root / "home", root / "tmp"):
        folder.mkdir(parents=True, exist_ok=True)
    env = {**ENV, "HOME": str(root / "home"), "TMPDIR": str(root / "tmp"),
           "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "empdg.chat", f"ckpt_path={checkpoint}", *overrides],
        cwd=cwd, env=env, input="\n".join(lines) + "\n", capture_output=True, text=True, encoding="utf-8",
        timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done


@pytest.mark.slow
def test_the_chat_writes_nothing_by_default(tiny_checkpoint: Path, tmp_path: Path) -> None:
    done = run_chat(tiny_checkpoint, tmp_path, [f"my secret is {MARKER}", "/reset", f"again {MARKER}"])
    assert done.stdout.count("bot> ") >= 3
    assert not list((tmp_path / "cwd").iterdir())
    assert not (tmp_path / "mlflow.db").exists()
    assert files_holding(tmp_path, MARKER) == [] and MARKER not in done.stderr


@pytest.mark.slow
def test_the_chat_logs_redacted_sessions_when_asked(tiny_checkpoint: Path, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    lines = ["my name is Sarah Connor, mail me at zed@example.org", "/reset", "call +44 20 7946 0958"]
    done = run_chat(tiny_checkpoint, tmp_path, lines, "chat.log.enabled=true", f"chat.log.dir={logs}")
    printed = [line.split("session ")[1].split()[0] for line in done.stdout.splitlines() if "saved as session" in line]
    assert len(printed) == 2 and sorted(printed) == sorted(p.stem for p in logs.glob("*.jsonl"))
    users = [ChatLog(logs, 1).read(logs / f"{s}.jsonl")[0]["user"] for s in printed]
    assert users == ["my name is [NAME], mail me at [EMAIL]", "call [PHONE]"]
    for secret in ("Sarah", "zed@example.org", "7946"):
        assert files_holding(tmp_path, secret) == []


@pytest.mark.slow
def test_the_served_model_writes_nothing(tiny_checkpoint: Path, tmp_path: Path, monkeypatch, caplog) -> None:
    import mlflow

    from empdg.serving.pyfunc_model import EmpDGChatModel
    from empdg.serving.registry import _stage, chat_defaults

    stage = tmp_path / "model"
    _stage(tiny_checkpoint, None, stage, {"strategy": "greedy", "max_len": 8}, chat_defaults())
    watched = tmp_path / "watched"
    (watched / "home").mkdir(parents=True)
    monkeypatch.chdir(watched)
    monkeypatch.setenv("HOME", str(watched / "home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{watched / 'mlflow.db'}")
    model = EmpDGChatModel()
    model.load_context(SimpleNamespace(artifacts={"run": str(stage)}))
    with caplog.at_level(logging.DEBUG):
        answers = model.predict(None, [{"history": [f"my secret is {MARKER}"]}, {"history": ["hi", "hello", MARKER]}])
        with pytest.raises(Exception, match="odd number"):
            model.predict(None, [{"history": [MARKER, "hello"]}])
    assert len(answers) == 2 and all(a["reply"] for a in answers)
    assert MARKER.split()[0] not in caplog.text
    assert mlflow.get_last_active_trace_id() is None  # no MLflow trace of the request
    assert files_holding(tmp_path, MARKER) == [] and not (watched / "mlflow.db").exists()
