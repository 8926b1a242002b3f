"""A real ``mlflow server`` on 127.0.0.1 in a folder of its own, for tests and benchmarks.

It runs as a lab's server would (SQLite backend, artifact serving on, artifacts in ``<folder>/artifacts``)
so that what goes through HTTP and the artifact proxy is exercised for real; only the address is local.
The server gets its own process group, so stopping it ends uvicorn's workers and job runner with it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


class ServerStartError(RuntimeError):
    """``mlflow server`` did not answer on /health in time (its log's tail is in the message)."""


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def mlflow_command() -> list[str]:
    """The ``mlflow`` program beside this interpreter (a virtualenv's), else ``python -m mlflow``."""
    program = Path(sys.executable).with_name("mlflow")
    return [str(program)] if program.exists() else [sys.executable, "-m", "mlflow"]


@dataclass
class LocalMlflowServer:
    """A started server: its URI, its backend database, its artifact folder and its process."""

    uri: str
    db: Path
    artifacts: Path
    process: subprocess.Popen
    log_path: Path

    def stop(self) -> None:
        """Kill the server's process group (the one started here), then reap it."""
        if self.process.poll() is None or _group_alive(self.process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def log_tail(self, chars: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]
        return ""


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def start_server(
    folder: Path, *, serve_artifacts: bool = True, workers: int = 1, timeout: float = 180
) -> LocalMlflowServer:
    """Start ``mlflow server`` on a free 127.0.0.1 port with its store in ``folder``; wait for /health.

    With ``serve_artifacts`` the server proxies artifacts to ``<folder>/artifacts``
    (``--serve-artifacts --artifacts-destination``), as a lab's server should be run.
    """
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    db, artifacts = folder / "mlflow.db", folder / "artifacts"
    command = [
        *mlflow_command(), "server",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--backend-store-uri", f"sqlite:///{db}",
        "--workers", str(workers),
    ]  # fmt: skip
    if serve_artifacts:
        command += ["--serve-artifacts", "--artifacts-destination", str(artifacts)]
    else:
        command += ["--no-serve-artifacts", "--default-artifact-root", str(artifacts)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}
    log_path = folder / "server.log"
    with log_path.open("w") as log_file:  # the child keeps its own descriptor
        process = subprocess.Popen(
            command, cwd=folder, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = LocalMlflowServer(f"http://127.0.0.1:{port}", db, artifacts, process, log_path)
    deadline = time.monotonic() + timeout
    while not _healthy(server.uri):
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise ServerStartError(f"mlflow server did not start on {server.uri}:\n{server.log_tail()}")
        time.sleep(0.5)
    return server


def _healthy(uri: str) -> bool:
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def running_server(folder: Path, **options: object) -> Iterator[LocalMlflowServer]:
    """:func:`start_server` for the duration of a ``with`` block; stopped however the block ends."""
    server = start_server(folder, **options)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop()
