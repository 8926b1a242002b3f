"""The GPU checks' device fixture: CUDA when present, else skipped; ``EMPDG_TEST_DEVICE=cpu`` runs them on CPU.

The CPU run is only the dry run that proves the tests (and ``scripts/gpu_check.py --device cpu``) work
where no GPU is; on a machine with CUDA the tests run on ``cuda`` unless the variable says otherwise.
Tests marked ``cpu_dry_run`` (the cheap ones) run on the CPU instead of skipping, so the everyday suite keeps
the GPU tests' own code in step with the project between the rare runs on a GPU (it once drifted unseen).
"""

from __future__ import annotations

import os

import pytest
import torch

DEVICE_ENV = "EMPDG_TEST_DEVICE"


def chosen_device() -> torch.device | None:
    """The device the GPU tests run on, or None where they should skip (no CUDA and no override)."""
    wanted = os.environ.get(DEVICE_ENV)
    if wanted:
        return torch.device(wanted)
    return torch.device("cuda") if torch.cuda.is_available() else None


@pytest.fixture
def device(request: pytest.FixtureRequest) -> torch.device:
    chosen = chosen_device()
    if chosen is None and request.node.get_closest_marker("cpu_dry_run"):
        return torch.device("cpu")
    if chosen is None:
        pytest.skip(f"no CUDA device (set {DEVICE_ENV}=cpu to dry-run the GPU tests on CPU)")
    if chosen.type == "cuda" and not torch.cuda.is_available():
        pytest.fail(f"{DEVICE_ENV}={chosen} but torch sees no CUDA device")
    return chosen
