"""``mlflow models serve`` on the loopback interface, for tests, benchmarks and a first look at a model.

One place knows how to start MLflow's scoring server on a registered model, wait until ``/ping``
answers, and stop it: the REST test and the latency benchmark share it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from empdg.tracking.local_server import free_port, mlflow_command


class ModelServerError(RuntimeError):
    """The model server stopped or did not answer /ping in time (its log's tail is in the message)."""


@dataclass
class ModelServer:
    url: str  # http://127.0.0.1:PORT
    startup_s: float  # from start to the first answered /ping

    @property
    def invocations(self) -> str:
        return f"{self.url}/invocations"


def serving_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's) with this interpreter's bin folder first on PATH.

    ``mlflow models serve`` starts ``uvicorn`` by name, as an activated virtualenv would find it.
    """
    env = dict(os.environ if base is None else base)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    return env


@contextlib.contextmanager
def serving_model(
    model_uri: str, tracking_uri: str, folder: Path, env: Mapping[str, str] | None = None, timeout_s: float = 120
) -> Iterator[ModelServer]:
    """Serve ``model_uri`` with ``--env-manager local`` on a free 127.0.0.1 port until the block ends."""
    port = free_port()
    command = [*mlflow_command(), "models", "serve", "-m", model_uri, "--env-manager", "local"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    log_path = Path(folder) / "model_server.log"
    started = time.perf_counter()
    with log_path.open("w") as log:
        server = subprocess.Popen(
            command, cwd=folder, env={**serving_environment(env), "MLFLOW_TRACKING_URI": tracking_uri},
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}"
            while True:
                if server.poll() is not None:
                    raise ModelServerError("the model server stopped:\n" + log_path.read_text()[-3000:])
                if time.perf_counter() - started > timeout_s:
                    tail = log_path.read_text()[-3000:]
                    raise ModelServerError(f"no answer on /ping within {timeout_s:.0f} s:\n{tail}")
                try:
                    with urllib.request.urlopen(f"{url}/ping", timeout=2) as response:
                        if response.status == 200:
                            break
                except OSError:
                    time.sleep(0.2)
            yield ModelServer(url, time.perf_counter() - started)
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
