"""The layers contract in pyproject.toml (import-linter) holds, and really fails on an upward import."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tiny import REPO

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint(root: Path) -> subprocess.CompletedProcess:
    """lint-imports on the package copied under ``root`` (its own pyproject.toml, nothing else importable first)."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is a dev extra: pip install -e '.[dev]'")
def test_the_contract_holds_and_an_upward_import_breaks_it(tmp_path: Path) -> None:
    shutil.copy2(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(REPO / "src" / "empdg", tmp_path / "empdg", ignore=shutil.ignore_patterns("__pycache__"))
    kept = lint(tmp_path)
    assert kept.returncode == 0 and "1 kept, 0 broken" in kept.stdout, kept.stdout[-3000:] + kept.stderr[-2000:]

    # the models layer reaching up into training: what the contract exists to stop
    with (tmp_path / "empdg" / "models" / "decoding.py").open("a", encoding="utf-8") as module:
        module.write("\nfrom empdg.training import module as _upward  # noqa: E402,F401\n")
    broken = lint(tmp_path)
    assert broken.returncode != 0 and "0 kept, 1 broken" in broken.stdout, broken.stdout[-3000:]
    assert "empdg.models.decoding -> empdg.training.module" in broken.stdout
