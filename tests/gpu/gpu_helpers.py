"""Helpers of the GPU tests (``from gpu.gpu_helpers import ...``; ``tests/`` is on the path)."""

from __future__ import annotations

import torch


def accelerator_overrides(device: torch.device) -> list[str]:
    """Hydra overrides that put a training run on ``device`` (one device, no DDP)."""
    return ["trainer.accelerator=" + ("gpu" if device.type == "cuda" else "cpu"), "trainer.devices=1"]


def to_device(batch: dict, device: torch.device) -> dict:
    """A collated batch with its tensors on ``device`` (other values as they are)."""
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
