"""``overrides_file=PATH`` on a command line: the Hydra overrides written in a file, one per line.

A sweep writes its best configuration as such a file (``best_overrides.txt``). Pasting it through the shell
(``$(cat best_overrides.txt)``) splits a value with spaces and expands ``*``, ``$`` or quotes in it; this
reads each line as one argument, exactly as written, with no shell in between. Hydra has no such option,
so the command expands the argument before Hydra parses ``sys.argv``; overrides after it win over the file's.
"""

from __future__ import annotations

from pathlib import Path

from empdg.data.file_schema import read_text_bounded
from empdg.errors import MissingFileError

KEY = "overrides_file"
MAX_BYTES = 1024 * 1024  # a file of overrides is a few hundred bytes


def read_overrides_file(path: str | Path) -> list[str]:
    """The overrides of ``path``: one per line; blank lines and lines starting with ``#`` are skipped."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingFileError(f"{KEY}={path} does not exist (a file of Hydra overrides, one per line)")
    text = read_text_bounded(path, max_bytes=MAX_BYTES, what="overrides file")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def expand_overrides_files(argv: list[str]) -> list[str]:
    """``argv`` with every ``overrides_file=PATH`` (or ``+overrides_file=PATH``) replaced by the file's overrides."""
    expanded: list[str] = []
    for argument in argv:
        key, sep, value = argument.partition("=")
        if sep and key.lstrip("+") == KEY:
            expanded += read_overrides_file(value)
        else:
            expanded.append(argument)
    return expanded
