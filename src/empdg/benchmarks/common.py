"""Shared helpers of the benchmark commands: a robust timer, peak memory, the real sample's default place."""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path

#: the real ED sample when the command runs in a checkout with ``../shared`` beside it (relative to
#: the working directory, like every default path of the project)
REAL_SAMPLE = Path("..") / "shared" / "data" / "ed-real-sample"


def sample_data_overrides(overrides: list[str]) -> list[str]:
    """The overrides that read the real ED sample, unless ``overrides`` choose the data (``data=...``) or the
    sample is not beside the checkout (then the configured data: the built-in corpus by default)."""
    if any(o.startswith("data=") for o in overrides) or not REAL_SAMPLE.exists():
        return []
    return ["data=empathetic_dialogues", f"data.root={REAL_SAMPLE.resolve()}", "data.download=false"]


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
