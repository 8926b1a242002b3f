"""Shared fixtures of the tracking tests: a real ``mlflow server`` on 127.0.0.1 in a temporary folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from empdg.tracking.local_server import LocalMlflowServer, ServerStartError, start_server


@pytest.fixture
def mlflow_server(tmp_path: Path):
    """``mlflow server`` on a free loopback port: SQLite backend, artifact serving on (``<tmp>/server``).

    Yields the :class:`LocalMlflowServer` (``uri``, ``db``, ``artifacts``, ``process``); killed afterwards.
    """
    try:
        server: LocalMlflowServer = start_server(tmp_path / "server")
    except ServerStartError as error:
        pytest.fail(str(error))
    try:
        yield server
    finally:
        server.stop()
