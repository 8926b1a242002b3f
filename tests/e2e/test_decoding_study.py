"""experiments/decoding/run.py end to end on a tiny checkpoint: one evaluation per decoding, tables against greedy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tiny import REPO


def test_decoding_study_scores_each_decoding_and_pairs_it_with_greedy(tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "decoding"
    command = [sys.executable, str(REPO / "experiments" / "decoding" / "run.py"), "--smoke",
               "--checkpoint", str(tiny_checkpoint), "--temperatures", "0.7", "--bootstrap", "20", "--out", str(out),
               "evaluate.meaning=false", "decoding.max_len=8"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHON": sys.executable}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    names = ["greedy", "beam", "sample_t0.7"]
    metrics = {name: json.loads((out / name / "metrics.json").read_text()) for name in names}
    hydra = {name: (out / name / "hydra" / ".hydra" / "overrides.yaml").read_text() for name in names}
    assert "decoding=beam" in hydra["beam"] and "decoding.temperature=0.7" in hydra["sample_t0.7"]
    results = (out / "results.md").read_text()
    rows = [line for line in results.splitlines() if line.startswith("| greedy |")]
    assert f"{metrics['greedy']['dist_2']:,.2f}" in rows[0]  # the point table reads each evaluation's figures
    assert "Δ dist_2 vs greedy" in results and "sample_t0.7" in results
    # a second call reuses the evaluations it finds (no new folder times)
    before = (out / "greedy" / "metrics.json").stat().st_mtime_ns
    assert subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, timeout=600).returncode == 0
    assert (out / "greedy" / "metrics.json").stat().st_mtime_ns == before
