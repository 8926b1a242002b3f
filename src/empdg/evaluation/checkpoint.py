"""Rebuild a trained :class:`EmpDGModule` from a Lightning checkpoint, safely and generically.

``torch.load(weights_only=True)`` never unpickles arbitrary objects, so a checkpoint from elsewhere
cannot run code. The module is rebuilt from the checkpoint's own ``hyper_parameters`` (whatever
constructor arguments they hold, so new ones keep working), then its ``state_dict`` is loaded.
The run folder's ``config.yaml`` (written by training next to ``checkpoints/``) supplies the data
settings the model was trained with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from empdg.training.module import EmpDGModule


@dataclass
class LoadedCheckpoint:
    module: EmpDGModule
    hyper_parameters: dict[str, Any]
    run_config: dict[str, Any] | None
    path: Path


def run_config_path(ckpt_path: Path) -> Path:
    """``<run>/checkpoints/x.ckpt`` -> ``<run>/config.yaml``."""
    return ckpt_path.resolve().parent.parent / "config.yaml"


def load_run_config(ckpt_path: Path) -> dict[str, Any] | None:
    path = run_config_path(ckpt_path)
    if not path.is_file():
        return None
    return OmegaConf.to_container(OmegaConf.load(path), resolve=False)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Load weights-only, rebuild the module in eval mode; clear errors for non-EmpDG files."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"ckpt_path={path} does not exist")
    checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    if not hparams or "state_dict" not in checkpoint:
        raise ValueError(f"{path} is not an empdg Lightning checkpoint (no hyper_parameters/state_dict)")
    module = EmpDGModule(**hparams)
    module.load_state_dict(checkpoint["state_dict"])
    module.eval()
    return LoadedCheckpoint(module, dict(hparams), load_run_config(path), path.resolve())
