"""Hydra's own command-line errors as user errors: one ``error:`` line, exit status 2, a "did you mean".

A misspelt option (``model=empdgg``), an unknown key (``modle.d_model=3``) or a malformed override
(``foo``) fails while Hydra composes the config, before the command's function runs -- outside its
:func:`empdg.errors.exit_on_user_error`. Hydra reports those itself (a search-path listing, exit 1).
:func:`reports_compose_errors` wraps a ``@hydra.main`` function so they end like every other mistake.

Hydra has no public hook for this: for the time of the call the wrapper replaces
``hydra._internal.utils.run_and_report`` (through which ``hydra.main`` runs composition and the job) by
one that turns composition errors into the one line and hands everything else to Hydra's own report.
``HYDRA_FULL_ERROR=1`` still shows Hydra's full traceback, for debugging.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import os
import sys
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, TypeVar

from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from empdg.errors import EXIT_USER_ERROR, ConfigError, format_user_error

__all__ = ["describe_compose_error", "reports_compose_errors"]

F = TypeVar("F", bound=Callable[..., Any])


def _did_you_mean(word: str, choices: list[str], render: Callable[[str], str]) -> str:
    matches = difflib.get_close_matches(word, choices, n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(render(match) for match in matches)}?)" if matches else ""


def _first_line(error: BaseException) -> str:
    return next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)


def _missing_option(error: MissingConfigException) -> str:
    group, _, name = (error.missing_cfg_file or "").rpartition("/")
    options = sorted(str(option) for option in error.options or [])
    if not group or not options:  # a primary config (--config-name) or no listing: Hydra's first line says it
        return _first_line(error)
    hint = _did_you_mean(name, options, lambda match: f"{group}={match}")
    return f"{group}={name}: no such option of the '{group}' config group{hint}; the options: {', '.join(options)}"


def _bad_override(error: HydraException) -> str | None:
    """``Could not override 'KEY'``: an unknown key (with the keys next to it as suggestions) or a wrong type."""
    first = _first_line(error)
    if not first.startswith("Could not override '"):
        return None
    key = first[len("Could not override '") :].split("'", 1)[0]
    cause = error.__cause__
    if isinstance(cause, (ConfigKeyError, ConfigAttributeError)) and cause.key is not None:
        full_key = str(cause.full_key or cause.key)
        parent_path, rest = full_key.rpartition(".")[0], key[len(full_key) :] if key.startswith(full_key) else ""
        parent = cause.parent_node
        choices = [str(name) for name in parent] if isinstance(parent, DictConfig) else []
        prefix = f"{parent_path}." if parent_path else ""
        hint = _did_you_mean(str(cause.key), choices, lambda match: f"{prefix}{match}{rest}")
        if not hint and choices:
            hint = f"; the keys of {parent_path or 'the config'}: {', '.join(choices)}"
        return f"unknown key {key}{hint}"
    if isinstance(cause, OmegaConfBaseException):
        return f"{key}: {_first_line(cause)}"
    return first


def describe_compose_error(error: BaseException) -> str | None:
    """The one-line message for an error of Hydra's composition, or None when it is not one."""
    if isinstance(error, MissingConfigException):
        return _missing_option(error)
    if isinstance(error, OverrideParseException):
        problem = next(
            (line.strip() for line in error.message.splitlines()
             if line.strip() and not line.startswith(("Error parsing override", "See https://"))),
            "not an override",
        )  # fmt: skip
        syntax = "write key=value, group=option, +key=value or ~key"
        return f"cannot read the override '{error.override}': {problem} ({syntax})"
    if isinstance(error, HydraException):
        message = _bad_override(error)
        if message is not None:
            return message
        message, cause = _first_line(error), error.__cause__
        if isinstance(cause, OmegaConfBaseException) and _first_line(cause) not in message:
            message += f": {_first_line(cause)}"
        return message
    if isinstance(error, OmegaConfBaseException):
        return _first_line(error)
    return None


def _raised_by_the_job(traceback: TracebackType | None) -> bool:
    """Whether the error passed through Hydra's ``run_job`` (the command's own work), not composition."""
    while traceback is not None:
        frame = traceback.tb_frame
        if frame.f_code.co_name == "run_job" and frame.f_globals.get("__name__") == "hydra.core.utils":
            return True
        traceback = traceback.tb_next
    return False


def _compose_errors_exit(func: Callable[[], Any]) -> Any:
    try:
        return func()
    except Exception as error:
        if os.environ.get("HYDRA_FULL_ERROR") == "1" or _raised_by_the_job(error.__traceback__):
            raise  # Hydra's report (the full traceback with HYDRA_FULL_ERROR=1); a job's bugs stay bugs
        message = describe_compose_error(error)
        if message is None:
            raise
        print(format_user_error(ConfigError(message)), file=sys.stderr, flush=True)
        raise SystemExit(EXIT_USER_ERROR) from None


@contextlib.contextmanager
def _compose_errors_as_user_errors() -> Iterator[None]:
    import hydra._internal.utils as hydra_utils

    original = hydra_utils.run_and_report

    def run_and_report(func: Callable[[], Any]) -> Any:
        return original(lambda: _compose_errors_exit(func))

    hydra_utils.run_and_report = run_and_report
    try:
        yield
    finally:
        hydra_utils.run_and_report = original


def reports_compose_errors(main: F) -> F:
    """Wrap a ``@hydra.main`` function: Hydra's composition errors end in one ``error:`` line, exit 2."""

    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _compose_errors_as_user_errors():
            return main(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
