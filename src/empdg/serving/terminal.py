"""The terminal side of the chat: a session from the command's config, and the read-reply loop.

The loop reads stdin line by line (so it scripts too). Each turn prints the reply and the user's
predicted emotion with its top-3 probabilities. Commands: ``/emotions`` shows the running (decayed)
emotion distribution, ``/reset`` forgets the conversation, ``/quit`` (or end of input) leaves.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import TextIO

from omegaconf import DictConfig, OmegaConf

from empdg.data.builtin import builtin_model_notice
from empdg.errors import ConfigError, user_errors_from
from empdg.models.decoding import DecodingConfig
from empdg.models.inference import inference_device
from empdg.serving.chat_log import ChatLog
from empdg.serving.chat_session import ChatSession, ChatSettings, Turn
from empdg.training.checkpoint import load_checkpoint

HELP = "commands: /emotions, /reset, /quit"


def _percent(pairs: list[tuple[str, float]]) -> str:
    return ", ".join(f"{name} {p:.0%}" for name, p in pairs)


def build_session(cfg: DictConfig) -> ChatSession:
    """Checkpoint + ``chat.*`` + ``decoding.*``; unset context settings come from the checkpoint run's data config.

    The model answers on ``chat.device`` (``auto``: the GPU when torch sees one)."""
    if not cfg.ckpt_path:
        raise ConfigError("ckpt_path=PATH is required")
    with user_errors_from():  # a missing, unsafe or foreign checkpoint; chat.* and decoding.* settings
        loaded = load_checkpoint(cfg.ckpt_path)
        run_data = (loaded.run_config or {}).get("data") or None
        settings = ChatSettings.from_config(cfg.chat, run_data, OmegaConf.to_container(cfg.data, resolve=True))
        decoding = DecodingConfig.from_mapping(OmegaConf.to_container(cfg.decoding, resolve=True))
        device = inference_device(cfg.chat.get("device", "auto"), "chat.device")
        session = ChatSession(loaded.bundle.to(device), decoding, settings)
        session.notice = builtin_model_notice(run_data)  # a templated corpus' replies must not read as a bug
        return session


def _lines(stream: TextIO, interactive: bool) -> Iterator[str]:
    while True:
        if interactive:
            try:
                yield input("you> ")
            except EOFError:
                return
        else:
            line = stream.readline()
            if not line:
                return
            yield line.rstrip("\n")


def show_turn(turn: Turn, verbose: bool, out: TextIO) -> None:
    print(f"bot> {turn.reply}", file=out)
    if turn.emotions:
        print(f"     [you seem: {_percent(turn.emotions)}]", file=out)
    if verbose:
        for candidate in turn.candidates:
            scores = ", ".join(f"{k}={v:.3f}" for k, v in candidate.scores.items())
            flag = f" [rejected: {candidate.problem}]" if candidate.problem else ""
            print(f"     candidate ({candidate.total:+.2f}; {scores}): {candidate.text!r}{flag}", file=out)
        if turn.fallback_reason:
            print(f"     (fallback reply: every candidate was degenerate -- {turn.fallback_reason})", file=out)
        for note in turn.notes:
            print(f"     ({note})", file=out)


def _logging_notice(log: ChatLog) -> str:
    return (
        f"(chat.log is on: this conversation is saved as session {log.session} in {log.folder}, personal data "
        f"redacted; delete it with: python -m empdg.chat_logs action=delete session={log.session} "
        f"chat.log.dir={log.folder})"
    )


def chat_loop(
    session: ChatSession,
    verbose: bool,
    stream: TextIO = sys.stdin,
    out: TextIO = sys.stdout,
    log: ChatLog | None = None,
) -> int:
    """Answer every line until /quit or end of input; return the number of replies.

    Nothing about the conversation leaves this loop but the printed replies, unless ``log`` (``chat.log``) is given.
    """
    interactive = stream.isatty()
    print(f"EmpDG chat -- {HELP}", file=out, flush=True)
    if session.notice:
        print(session.notice, file=out, flush=True)
    if log is not None:
        print(_logging_notice(log), file=out, flush=True)
        if log.expired:
            print(f"({log.expired} logged turn(s) older than chat.log.retention_days deleted)", file=out, flush=True)
    replies = 0
    for raw in _lines(stream, interactive):
        text = raw.strip()
        command = text.lower()
        if not text:
            print("bot> (say something, or /quit)", file=out, flush=True)
            continue
        if command in ("/quit", "/exit"):
            break
        if command == "/reset":
            session.reset()
            print("bot> (conversation forgotten)", file=out, flush=True)
            if log is not None:  # a new conversation: a new pseudonymous session
                log.new_session()
                print(_logging_notice(log), file=out, flush=True)
            continue
        if command == "/emotions":
            top = session.memory.top(5)
            shown = _percent(top) if top else "nothing yet" if session.has_emotions else "no emotion classifier"
            print(f"     [your emotions over {session.memory.turns} turn(s): {shown}]", file=out, flush=True)
            continue
        if command.startswith("/") and " " not in command:
            print(f"bot> (unknown command; {HELP})", file=out, flush=True)
            continue
        turn = session.respond(text)
        show_turn(turn, verbose, out)
        out.flush()
        if log is not None:
            log.record(text, turn.reply, turn.emotions[0][0] if turn.emotions else None, turn.fallback_reason)
        replies += 1
    print("bye", file=out, flush=True)
    return replies


def make_streams_forgiving() -> None:
    """Odd bytes on stdin or a narrow terminal encoding must not end the chat."""
    for stream in (sys.stdin, sys.stdout):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")
