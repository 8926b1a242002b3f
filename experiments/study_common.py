"""What the Python study scripts share: the interpreter, running a command into a log, mean ± std.

The scripts add ``experiments/`` to ``sys.path`` and import this module; it is not part of the package.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def python() -> str:
    """The project's virtualenv unless ``PYTHON`` says otherwise."""
    venv = REPO / ".venv" / "bin" / "python"
    return os.environ.get("PYTHON") or (str(venv) if venv.exists() else sys.executable)


def run(command: list[str], log_path: Path, threads: int) -> float:
    """Run a train or evaluate command with ``threads`` torch threads, output to ``log_path``; its seconds."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    command = [*command, f"runtime.num_threads={threads}"]
    started = time.time()
    with log_path.open("w") as log:
        code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env)
    seconds = time.time() - started
    if code != 0:
        raise RuntimeError(f"failed ({code}) after {seconds:.0f}s: {' '.join(command)}\n  see {log_path}")
    print(f"  done in {seconds:.0f}s: {log_path.parent.name}", flush=True)
    return seconds


def real_data(data_root: str | Path) -> list[str]:
    """Overrides that read the official EmpatheticDialogues CSV files in ``data_root`` (no download)."""
    return ["data=empathetic_dialogues", f"data.root={data_root}", "data.download=false"]


def mean_std(values: list[float], digits: int = 3) -> str:
    """``mean ± std`` (sample std) with ``digits`` significant digits; one value alone; ``–`` for none."""
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}g}"
    return f"{statistics.mean(values):.{digits}g} ± {statistics.stdev(values):.2g}"
