"""User errors: one ``error: <message>`` line on stderr and exit status 2, no traceback.

A mistake on the command line or in the user's data (an unreadable ``data.root``, impossible
settings, a checkpoint that does not exist) is not a bug: the user needs the message, not Hydra's
"Error executing job" report with a stack trace. Which exceptions count is explicit:

- :class:`UserError` (and its :class:`ConfigError` / :class:`MissingFileError`), raised by the
  project's own checks, or converted from the ``ValueError`` / ``FileNotFoundError`` of a checking
  function by :func:`user_errors_from` (``validate_config``, loading a checkpoint, reading a
  prediction file...);
- :class:`empdg.data.errors.DataError` (the data cannot be used as configured) and
  :class:`empdg.data.download.DatasetDownloadError` (the message says how to fetch it by hand).

Any other exception is a bug or an environment failure and keeps its traceback.

Every command entry point wraps its work in :func:`exit_on_user_error` (inside the ``@hydra.main``
function, so Hydra never sees the exception)::

    @hydra.main(...)
    def main(cfg):
        with exit_on_user_error():
            run(cfg)
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Iterator
from typing import Any, TextIO

__all__ = [
    "EXIT_USER_ERROR",
    "ConfigError",
    "MissingFileError",
    "UserError",
    "exit_on_user_error",
    "format_user_error",
    "is_number",
    "is_user_error",
    "is_whole",
    "whole_problems",
    "user_errors_from",
]

EXIT_USER_ERROR = 2


def is_whole(value: Any) -> bool:
    """Whether a setting is a whole number: OmegaConf gives ``seed=abc`` as a str and ``true`` as a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def whole_problems(key: str, value: Any, low: int, note: str = "", allow_null: bool = False) -> list[str]:
    """No problem when ``value`` is a whole number >= ``low`` (or null, with ``allow_null``); else the one problem,
    ``<key>=<value> must be a whole number >= <low><note>``."""
    if (allow_null and value is None) or (is_whole(value) and value >= low):
        return []
    return [f"{key}={value!r} must be a whole number >= {low}{note}"]


#: the largest seed numpy (and so Lightning's seed_everything) accepts
MAX_SEED = 2**32 - 1


def seed_problems(seed: Any) -> list[str]:
    """``seed`` as every command needs it: a whole number numpy accepts (``seed=abc`` or ``-1`` fails mid-start)."""
    if not is_whole(seed) or not 0 <= seed <= MAX_SEED:
        return [f"seed={seed} must be a whole number from 0 to {MAX_SEED}"]
    return []


def is_number(value: Any) -> bool:
    """Whether a setting is a finite number (``nan`` and ``inf`` parse as floats; a bool is not a number)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class UserError(Exception):
    """A problem the user can fix (configuration, paths, data); its message says what and where."""


class ConfigError(UserError, ValueError):
    """An impossible or inconsistent setting (a ``ValueError``, so callers catching those still do)."""


class MissingFileError(UserError, FileNotFoundError):
    """A path given on the command line does not exist (a ``FileNotFoundError`` too)."""


def _user_error_types() -> tuple[type[BaseException], ...]:
    from empdg.data.download import DatasetDownloadError
    from empdg.data.errors import DataError

    return (UserError, DataError, DatasetDownloadError)


def is_user_error(error: BaseException) -> bool:
    return isinstance(error, _user_error_types())


@contextlib.contextmanager
def user_errors_from() -> Iterator[None]:
    """Inside: ``ValueError`` / ``FileNotFoundError`` are the user's mistakes (use it around checks only).

    They are re-raised as :class:`ConfigError` / :class:`MissingFileError` with the same message
    (chained to the original, which stays available as ``__cause__``). Other exceptions pass as they are.
    """
    try:
        yield
    except UserError:
        raise
    except FileNotFoundError as error:
        if is_user_error(error):
            raise
        raise MissingFileError(str(error)) from error
    except ValueError as error:
        if is_user_error(error):
            raise
        raise ConfigError(str(error)) from error


def format_user_error(error: BaseException, context: str | None = None) -> str:
    """``error: [<context>: ]<message>``; a list of one problem (``what:\\n  - problem``) becomes one line."""
    message = str(error).strip() or type(error).__name__
    if context:
        message = f"{context}: {message}"
    lines = message.splitlines()
    if len(lines) == 2 and lines[1].lstrip().startswith("- "):
        message = f"{lines[0].rstrip().rstrip(':')}: {lines[1].lstrip()[2:]}"
    return f"error: {message}"


@contextlib.contextmanager
def exit_on_user_error(stream: TextIO | None = None) -> Iterator[None]:
    """A user error inside ends the process: ``error: <message>`` on stderr, exit status 2, no traceback."""
    try:
        yield
    except Exception as error:
        if not is_user_error(error):
            raise
        print(format_user_error(error), file=stream or sys.stderr, flush=True)
        raise SystemExit(EXIT_USER_ERROR) from None
