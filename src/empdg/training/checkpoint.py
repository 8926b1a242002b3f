"""Rebuild a trained :class:`EmpDGModule` from a Lightning checkpoint, safely and generically.

``torch.load(weights_only=True)`` never unpickles arbitrary objects, so a checkpoint from elsewhere
cannot run code. The module is rebuilt from the checkpoint's own ``hyper_parameters`` (whatever
constructor arguments they hold, so new ones keep working), then its ``state_dict`` is loaded.
The run folder's ``config.yaml`` (written by training next to ``checkpoints/``) supplies the data
settings the model was trained with -- *what* data, never *where* to read it (see
``empdg.evaluation.data_choice``): a run folder may come from anyone.
"""

from __future__ import annotations

import pickle
import re
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


def load_checkpoint_file(
    path: str | Path, key: str = "ckpt_path", map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` of an empdg checkpoint; clear errors naming ``key`` otherwise.

    Only tensors and plain values are unpickled: a file that holds anything else (objects whose
    unpickling could run code) is refused before any of it runs.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{key}={path} does not exist")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        culprit = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        refers = f" (it refers to {culprit.group(1)})" if culprit else ""
        # `from None`: torch's own message suggests retrying with weights_only=False, which is exactly
        # what must not be done with a file of unknown origin
        raise ValueError(
            f"{key}={path} was refused as unsafe: it holds pickled objects other than tensors and plain "
            f"values{refers}, which torch.load(weights_only=True) does not load because unpickling them "
            f"could run code. It is not an empdg checkpoint (those hold only weights and plain values); "
            f"nothing in it was executed."
        ) from None
    except (RuntimeError, EOFError, OSError) as error:
        raise ValueError(f"{key}={path} is not a readable torch checkpoint: {error}") from error
    hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    if not hparams or "state_dict" not in checkpoint:
        raise ValueError(f"{key}={path} is not an empdg Lightning checkpoint (no hyper_parameters/state_dict)")
    return checkpoint


def with_local_pretrained(hparams: dict[str, Any], ckpt_path: Path) -> dict[str, Any]:
    """A pretrained generator whose ``model.pretrained`` is gone (a temporary folder, a hub name offline)
    is rebuilt from the run's own Hugging Face copy (``hf_model/`` beside ``checkpoints/``); the
    checkpoint's weights replace it anyway."""
    model = hparams.get("model") or {}
    pretrained = model.get("pretrained")
    if not pretrained or Path(str(pretrained)).expanduser().exists():
        return hparams
    local = ckpt_path.parent.parent / "hf_model"
    if (local / "config.json").is_file():
        return {**hparams, "model": {**model, "pretrained": str(local)}}
    return hparams


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Load weights-only, rebuild the module in eval mode; clear errors for non-EmpDG files."""
    path = Path(path).expanduser()
    checkpoint = load_checkpoint_file(path, "ckpt_path", map_location)
    hparams = with_local_pretrained(checkpoint["hyper_parameters"], path)
    module = EmpDGModule(**hparams)
    module.load_state_dict(checkpoint["state_dict"])
    module.eval()
    return LoadedCheckpoint(module, dict(hparams), load_run_config(path), path.resolve())
