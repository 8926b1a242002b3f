"""``runtime.*``: process settings every command applies before its work (today: torch's CPU threads).

torch picks its thread count from the whole machine, which oversubscribes a container or a job given
only part of it, and parallel sweep workers would each take every core. One setting,
``runtime.num_threads``, says how many threads a command uses; ``null`` means the cores this process
may run on (its CPU affinity), or ``OMP_NUM_THREADS`` when the environment sets it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from typing import Any

from empdg.errors import ConfigError, is_whole


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the platform has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def resolve_num_threads(value: Any) -> int:
    """``runtime.num_threads`` as a count: an integer >= 1, or null for the default described above."""
    if value is None:
        env = os.environ.get("OMP_NUM_THREADS", "").strip()
        return int(env) if env.isdigit() and int(env) > 0 else available_cores()
    if not is_whole(value) or value < 1:
        raise ConfigError(f"runtime.num_threads={value!r} must be a whole number >= 1, or null (the available cores)")
    return value


def num_threads_of(cfg: Mapping[str, Any] | Any) -> int:
    """The thread count a composed config asks for (a config without ``runtime`` gets the default)."""
    runtime = cfg.get("runtime") if hasattr(cfg, "get") else None
    return resolve_num_threads(runtime.get("num_threads") if runtime is not None else None)


_interop_set = False


def set_torch_threads(n: int) -> None:
    """torch's intra-op threads, and its inter-op threads where torch still allows it.

    Inter-op threads can be set once per process, before any parallel work starts; later calls (a
    second command in the same process, tests) keep what is there instead of failing.
    """
    global _interop_set
    import torch

    torch.set_num_threads(n)
    if not _interop_set:
        _interop_set = True
        with contextlib.suppress(RuntimeError):  # parallel work already ran in this process: torch refuses
            torch.set_num_interop_threads(n)


def apply_runtime(cfg: Mapping[str, Any] | Any) -> int:
    """Apply ``cfg.runtime`` to this process; returns the thread count used."""
    n = num_threads_of(cfg)
    set_torch_threads(n)
    return n
