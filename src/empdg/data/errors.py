"""Error type for data that cannot be used as configured.

Problems with the user's data (an unreadable ``data.root``, an empty split) must end in one line
that names the path and what to do, not in a traceback from deep inside the reader. Raising this
type (a ``ValueError``, so callers that already catch those keep working) marks the message as
meant for the user.
"""

from __future__ import annotations

import os
from pathlib import Path


class DataError(ValueError):
    """The configured data cannot be read or is unusable; the message names the path and the fix."""


class MissingDataError(DataError, FileNotFoundError):
    """A file or folder the data settings name is not there (a ``FileNotFoundError`` too); the message says
    where to put it."""


def unreadable(path: Path, err: OSError, what: str = "data file") -> DataError:
    """A :class:`DataError` for an ``OSError`` while reading ``path`` (permission, not a folder, ...)."""
    reason = err.strerror or type(err).__name__
    if isinstance(err, PermissionError):
        hint = "make it readable by this user (chmod/chown) or point data.root at a readable copy"
    else:
        hint = "check the path, or point data.root at the folder holding train.csv, valid.csv and test.csv"
    return DataError(f"cannot read {what} {path}: {reason}; {hint}")


def check_readable_dir(root: Path) -> None:
    """Fail with one clear line when ``root`` exists but is a file or cannot be listed.

    Without this, ``Path.exists()``/``is_file()`` answer False for files inside an unreadable
    folder, and the user is told the files are missing (or a download starts) instead.
    A missing ``root`` is not an error here: the callers decide whether to download.
    """
    root = Path(root)
    try:
        os.listdir(root)
    except FileNotFoundError:
        return
    except NotADirectoryError:
        raise DataError(
            f"data.root={root} is a file, not a folder; point data.root at the folder holding "
            "train.csv, valid.csv and test.csv"
        ) from None
    except OSError as err:
        raise DataError(f"data.root={root} cannot be read: {err.strerror or type(err).__name__}; "
                        "make it readable by this user (chmod/chown) or point data.root at a readable "
                        "copy") from None


class InvalidFileError(DataError):
    """A file the project reads back (cache, run config, vocabulary, predictions, checkpoint, sweep output) is
    not what it should be: too large, too deep, wrong types or values. The message names the file and the problem.
    """

    def __init__(self, path: Path | str, problem: str, line: int | None = None) -> None:
        self.path = Path(path)
        self.problem = problem
        self.line = line  # of a line-based file (JSONL): ``file:line: problem``, as the prediction readers write
        super().__init__(f"{path}: {problem}" if line is None else f"{path}:{line}: {problem}")
