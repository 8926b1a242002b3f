"""``runtime.num_threads``: one setting for torch's threads, applied first by every command."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import pytest
import torch

from empdg.config import compose
from empdg.config.runtime import apply_runtime, available_cores, resolve_num_threads
from empdg.errors import EXIT_USER_ERROR, ConfigError


def test_null_means_the_cores_this_process_may_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert resolve_num_threads(None) == available_cores() == len(os.sched_getaffinity(0))
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # an explicit environment setting is kept
    assert resolve_num_threads(None) == 3
    assert resolve_num_threads(2) == 2


@pytest.mark.parametrize("value", [0, -1, "4", True, 1.5])
def test_impossible_values_name_the_key(value: object) -> None:
    with pytest.raises(ConfigError, match="runtime.num_threads"):
        resolve_num_threads(value)


@pytest.mark.parametrize("root", ["train", "evaluate", "chat", "sweep_root"])
def test_every_command_config_has_the_setting(root: str) -> None:
    assert compose(root, ["runtime.num_threads=3"]).runtime.num_threads == 3
    assert compose(root).runtime.num_threads is None


def test_apply_runtime_sets_torchs_threads() -> None:
    before = torch.get_num_threads()
    try:
        assert apply_runtime(compose("evaluate", ["runtime.num_threads=2"])) == 2
        assert torch.get_num_threads() == 2
        assert apply_runtime(compose("evaluate", ["runtime.num_threads=1"])) == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("command", ["train", "sweep", "evaluate", "chat"])
def test_every_command_applies_it_first(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """A bad value stops each command with the usual one-line error, before anything else runs."""
    module = importlib.import_module(f"empdg.commands.{command}")
    hydra_quiet = ["hydra/job_logging=none", "hydra/hydra_logging=none", "hydra.output_subdir=null"]
    argv = [command, "runtime.num_threads=0", f"paths.root_dir={tmp_path}", f"hydra.run.dir={tmp_path}", *hydra_quiet]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as stop:
        module.main()
    assert stop.value.code == EXIT_USER_ERROR
    assert "error: runtime.num_threads=0 must be" in capsys.readouterr().err
    assert torch.get_num_threads() == 1 and list(tmp_path.iterdir()) == []
