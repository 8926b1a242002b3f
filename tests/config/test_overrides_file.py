"""``overrides_file=PATH``: a file of Hydra overrides, one a line, read with no shell in between."""

from __future__ import annotations

from pathlib import Path

import pytest

from empdg.config.overrides_file import expand_overrides_files
from empdg.errors import MissingFileError


def test_each_line_is_one_override_as_written(tmp_path: Path) -> None:
    path = tmp_path / "best_overrides.txt"
    path.write_text("# the best trial\nmodel.dropout=0.1\n\nexperiment_name='a b; $(x) *'\n", encoding="utf-8")
    argv = ["seed=1", f"overrides_file={path}", "model.dropout=0.2"]  # later overrides win, as Hydra applies them
    assert expand_overrides_files(argv) == ["seed=1", "model.dropout=0.1", "experiment_name='a b; $(x) *'",
                                            "model.dropout=0.2"]  # fmt: skip
    assert expand_overrides_files([f"+overrides_file={path}"])[0] == "model.dropout=0.1"
    assert expand_overrides_files(["--cfg", "job"]) == ["--cfg", "job"]


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match="overrides_file=.*nope.txt does not exist"):
        expand_overrides_files([f"overrides_file={tmp_path / 'nope.txt'}"])
