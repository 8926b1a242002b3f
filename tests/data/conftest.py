"""Fixtures: paths made unreadable (also as root, which ignores modes), a server that never answers."""

from __future__ import annotations

import builtins
import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture
def deny_listing(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Path], None]]:
    """``deny_listing(folder)``: mode 000 (restored afterwards), or as root a listdir that refuses."""
    chmodded: list[Path] = []
    real = os.listdir

    def deny(folder: Path) -> None:
        if not AS_ROOT:
            folder.chmod(0)
            chmodded.append(folder)
            return

        def listdir(path: object = ".", *args: object, **kwargs: object):
            if Path(os.fspath(path)) == folder:
                raise PermissionError(13, "Permission denied", os.fspath(path))
            return real(path, *args, **kwargs)

        monkeypatch.setattr(os, "listdir", listdir)

    yield deny
    for folder in chmodded:
        folder.chmod(0o755)


@pytest.fixture
def deny_reading(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Path], None]]:
    """``deny_reading(file)``: mode 000 (restored afterwards), or as root an ``open`` that refuses."""
    chmodded: list[Path] = []
    real = builtins.open

    def deny(file: Path) -> None:
        if not AS_ROOT:
            file.chmod(0)
            chmodded.append(file)
            return

        def fake_open(path, *args, **kwargs):
            if isinstance(path, (str, os.PathLike)) and Path(os.fspath(path)) == file:
                raise PermissionError(13, "Permission denied", os.fspath(path))
            return real(path, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", fake_open)

    yield deny
    for file in chmodded:
        file.chmod(0o644)


class SilentServer:
    """A loopback TCP server that accepts connections and never sends a byte."""

    def __init__(self) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(8)
        self._listener.settimeout(0.05)  # poll, so that close() is not stuck behind a blocking accept
        self._stop = threading.Event()
        self.connections: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def url(self, name: str = "empatheticdialogues.tar.gz") -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}/{name}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                self.connections.append(self._listener.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()
        for conn in self.connections:
            conn.close()


@pytest.fixture
def silent_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[SilentServer]:
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    server = SilentServer()
    yield server
    server.close()
