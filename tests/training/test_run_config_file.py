"""A run folder's config.yaml is read back bounded: alias bombs, object tags and wrong types end in one
``InvalidFileError`` naming the file, before OmegaConf walks it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from empdg.data.errors import InvalidFileError
from empdg.training.checkpoint import load_run_config, read_run_config

# five short lines: 10 + 100 + ... + 100,000 strings once every alias is expanded (OmegaConf.load took 13.5 s here)
ALIAS_BOMB = """\
a: &a ["x","x","x","x","x","x","x","x","x","x"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_written_run_config_reads_back_as_omegaconf_reads_it(tmp_path: Path) -> None:
    text = "data:\n  name: builtin\n  max_context_len: 256\n  cache_dir: ${paths.root_dir}/c\nmodel:\n  name: empdg\n"
    path = write(tmp_path, text)
    assert read_run_config(path) == OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    assert read_run_config(write(tmp_path, "")) == {}


def test_nested_aliases_are_refused_before_they_expand(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(InvalidFileError, match="config.yaml: expands to more than 100000 YAML nodes"):
        read_run_config(write(tmp_path, ALIAS_BOMB))
    assert time.monotonic() - started < 2


def test_an_alias_that_contains_itself_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidFileError, match="alias that contains itself"):
        read_run_config(write(tmp_path, "a: &a [1, *a]\n"))


def test_object_tags_are_an_invalid_file_not_a_constructor_error(tmp_path: Path) -> None:
    path = write(tmp_path, 'data: !!python/object/apply:os.system ["echo hi"]\n')
    with pytest.raises(InvalidFileError, match=r"config.yaml: not a valid run config: could not determine a "
                       r"constructor for the tag .*python/object/apply:os.system.* \(line 1, column 7\)"):  # fmt: skip
        read_run_config(path)


def test_the_sections_that_are_used_are_type_checked(tmp_path: Path) -> None:
    with pytest.raises(InvalidFileError, match=r"data.max_context_len: Input should be a valid integer \(found 'lots"):
        read_run_config(write(tmp_path, "data:\n  name: builtin\n  max_context_len: lots\n"))
    with pytest.raises(InvalidFileError, match=r"config.yaml: data: Input should be a valid dictionary"):
        read_run_config(write(tmp_path, "data: [1, 2]\n"))
    with pytest.raises(InvalidFileError, match="Input should be a valid dictionary"):
        read_run_config(write(tmp_path, "- just\n- a list\n"))


def test_the_checkpoint_loader_reads_its_run_config_bounded(tmp_path: Path) -> None:
    (tmp_path / "checkpoints").mkdir()
    write(tmp_path, ALIAS_BOMB)
    with pytest.raises(InvalidFileError, match="YAML nodes"):
        load_run_config(tmp_path / "checkpoints" / "last.ckpt")
