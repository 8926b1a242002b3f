"""The new reply metrics on a real released output: ``python -m empdg.evaluate predictions_file=pred_EmpDG.txt``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from empdg.data.text_metrics import unique_replies
from empdg.evaluation.release_format import read_release_file
from empdg.evaluation.valence import valence_agreement

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8"}


@pytest.mark.real_data
def test_release_file_scores_unique_replies_and_valence(release_outputs_dir: Path, tmp_path: Path) -> None:
    source = release_outputs_dir / "pred_EmpDG.txt"
    command = [
        sys.executable,
        "-m",
        "empdg.evaluate",
        f"predictions_file={source}",
        "logger=none",
        "evaluate.meaning=false",
    ]
    done = subprocess.run(
        [*command, f"paths.root_dir={tmp_path}"], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    metrics = json.loads(done.stdout.strip().splitlines()[-1])

    records = read_release_file(source)
    preds = [r.pred for r in records]
    assert metrics["n_examples"] == len(records) == 2713
    # the entry point agrees with the pure functions on the same file
    assert metrics["unique_replies"] == unique_replies(preds)
    assert metrics["unique_reply_share"] == pytest.approx(unique_replies(preds) / 2713)
    expected = valence_agreement(preds, [r.emotion for r in records])
    assert metrics["valence_agreement"] == pytest.approx(expected["valence_agreement"])
    assert metrics["valence_neutral_share"] == pytest.approx(expected["valence_neutral_share"])
    # pinned values of the published EmpDG outputs (vaderSentiment 3.3): 1,798 distinct replies of 2,713;
    # 57.6% of replies have the gold emotion's polarity, 14.5% are neutral
    assert metrics["unique_replies"] == 1798
    assert round(metrics["valence_agreement"], 3) == 0.576
    assert round(metrics["valence_neutral_share"], 3) == 0.145

    out_line = next(line for line in done.stdout.splitlines() if line.startswith("outputs: "))
    out = Path(out_line.removeprefix("outputs: "))
    table = (out / "metrics.md").read_text()
    assert "| valence_agreement | 0.5757 |" in table and "| unique_replies | 1798 |" in table
    assert "MIME" in table  # the note under the table says what the metric is
    first = json.loads((out / "predictions.jsonl").read_text().splitlines()[0])
    assert first["emotion"] == "guilty" and "has_feedback" not in first  # the file has no Feedback lines
