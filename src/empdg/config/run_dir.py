"""A command that fails leaves no output folder behind that holds nothing but Hydra's bookkeeping.

Hydra creates the run folder (``outputs/evaluate/<time>/``), its ``.hydra/`` config copy and the job's log
file before the command runs; an evaluation that then fails on a bad argument would leave one such folder
per attempt, indistinguishable from a real result at a glance. :func:`discard_if_failed` removes it when the
command ends with an error (a user error's exit status 2 included) and the folder holds nothing else.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path


def bookkeeping_only(folder: Path, names: set[str]) -> bool:
    """Whether ``folder`` exists and holds nothing but entries named in ``names``."""
    try:
        return folder.is_dir() and all(entry.name in names for entry in folder.iterdir())
    except OSError:
        return False


def _hydra_run_dir() -> tuple[Path, set[str], bool] | None:
    """Hydra's run folder, the bookkeeping entries it writes there, and whether the user chose the folder."""
    from hydra.core.hydra_config import HydraConfig

    try:
        hydra_cfg = HydraConfig.get()
    except ValueError:  # not inside a Hydra run
        return None
    names = {f"{hydra_cfg.job.name}.log"}
    if hydra_cfg.output_subdir:
        names.add(str(hydra_cfg.output_subdir))
    chosen = any(item.split("=", 1)[0].lstrip("+~") == "hydra.run.dir" for item in hydra_cfg.overrides.hydra)
    return Path(hydra_cfg.runtime.output_dir), names, chosen


def _discard(folder: Path, names: set[str], chosen: bool) -> None:
    """Remove the bookkeeping; the folder itself too unless the user named it (it may have existed before)."""
    if not chosen:
        shutil.rmtree(folder, ignore_errors=True)
        return
    for name in names:
        entry = folder / name
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


@contextlib.contextmanager
def discard_if_failed() -> Iterator[None]:
    """Inside a ``@hydra.main`` function: on any failure, remove Hydra's run folder if the command wrote
    nothing into it (only ``.hydra/`` and the log file). A successful run keeps it as it is."""
    run_dir = _hydra_run_dir()
    try:
        yield
    except BaseException as error:
        if isinstance(error, SystemExit) and error.code in (0, None):
            raise
        if run_dir is not None and run_dir[0] != Path.cwd() and bookkeeping_only(run_dir[0], run_dir[1]):
            _discard(*run_dir)
        raise
