"""The GPU check script's budget: every step's limit is cut to what the check has left, a step with nothing
left is not started, and the summary is on disk after every step (scripts/gpu_check.py, docs/gpu.md).

The whole check is proven by its dry run (``--device cpu --quick``, a few minutes); these are the rules that
keep it inside the device call, checked in milliseconds.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_step_gets_its_own_limit_cut_to_the_budget_left_less_the_reserve(gpu_check: ModuleType) -> None:
    assert gpu_check.step_timeout(300.0, left=480.0, reserve=10.0) == 300.0  # plenty left: its own limit
    assert gpu_check.step_timeout(150.0, left=100.0, reserve=10.0) == 90.0  # 100 left, 10 kept for the summary
    assert gpu_check.step_timeout(60.0, left=8.0, reserve=10.0) == 0.0  # less than the reserve: not started


def test_a_spent_budget_starts_nothing_and_still_writes_a_failing_summary(gpu_check: ModuleType,
                                                                          tmp_path: Path) -> None:  # fmt: skip
    out = tmp_path / "out"
    out.mkdir()
    (out / "figures.json").write_text('{"rows": [], "complete": true, "markdown": "an earlier check"}')
    code = gpu_check.main(["--device", "cpu", "--budget", "0", "--out", str(out), "--wheels", str(tmp_path / "none")])
    assert code == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final"] is True and summary["ok"] is False
    assert [(s["name"], s["exit"]) for s in summary["steps"]] == [("preflight", "no time left")]
    assert summary["figures"] is None  # the earlier check's figures were removed, not reported as this one's
    assert (out / "summary.md").read_text().startswith("# GPU check: FAIL")
    assert "not started" in (out / "preflight.log").read_text()


def test_a_summary_written_between_steps_says_the_check_is_incomplete(gpu_check: ModuleType, tmp_path: Path) -> None:
    args = gpu_check.argparse.Namespace(device="cuda", quick=False, budget=480.0)
    step = {"name": "preflight", "exit": 0, "seconds": 3.0, "ok": True, "log": "preflight.log", "tail": ""}
    summary = gpu_check.summarise(tmp_path, args, 0.0, [step], "torch 2.11", [], [], final=False)
    assert summary["ok"] is False  # every step so far passed, but the check has not ended
    assert (tmp_path / "summary.md").read_text().startswith("# GPU check: INCOMPLETE")
