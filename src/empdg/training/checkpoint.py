"""Rebuild a trained model for inference (:class:`~empdg.models.inference.InferenceBundle`) from a Lightning
checkpoint, safely and generically.

``torch.load(weights_only=True)`` never unpickles arbitrary objects, so a checkpoint from elsewhere
cannot run code. The generator (and, if asked, the critics) is rebuilt from the checkpoint's own
``hyper_parameters``, then their weights are loaded from its ``state_dict``: no training module, optimizer,
adversarial game, phase table, resume state or validation metrics.
The run folder's ``config.yaml`` (written by training next to ``checkpoints/``) supplies the data
settings the model was trained with -- *what* data, never *where* to read it (see
``empdg.evaluation.data_choice``): a run folder may come from anyone.
"""

from __future__ import annotations

import pickle
import re
import stat
import sys
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from typing_extensions import TypedDict

from empdg.config.migration import migrate_hparams
from empdg.config.schema import AdversarialConfig, typed
from empdg.data.errors import InvalidFileError
from empdg.data.file_schema import MB, load_yaml_bounded, validate
from empdg.models.inference import InferenceBundle, critic_vocab_weights
from empdg.training.adversarial import build_critics, critic_panel

#: a run's config.yaml is a few kB; anything near this is not one
RUN_CONFIG_MAX_BYTES = 4 * MB


class RunDataSection(TypedDict, total=False):
    """The keys of a run config's ``data`` section that evaluation and chat take over (others pass unchecked)."""

    name: str
    source: str
    normalization: str
    max_context_len: int
    max_target_len: int
    max_emotion_words: int
    batch_size: int
    eval_batch_size: int
    vocab: dict[str, Any]
    builtin: dict[str, Any]
    limit_examples: dict[str, int]


class RunLoggerSection(TypedDict, total=False):
    tracking_uri: str | None


class RunConfigFile(TypedDict, total=False):
    """The parts of ``<run>/config.yaml`` that are read back: evaluation's data, chat's settings, run linking."""

    data: RunDataSection
    model: dict[str, Any]
    logger: RunLoggerSection


@dataclass
class LoadedCheckpoint:
    bundle: InferenceBundle
    hyper_parameters: dict[str, Any]
    run_config: dict[str, Any] | None
    path: Path


def run_config_path(ckpt_path: Path) -> Path:
    """``<run>/checkpoints/x.ckpt`` -> ``<run>/config.yaml``."""
    return ckpt_path.resolve().parent.parent / "config.yaml"


def read_run_config(path: Path) -> dict[str, Any]:
    """A run folder's ``config.yaml``: size and alias expansion bounded, the sections that are used validated.

    A run folder may come from anyone: a few lines of nested YAML aliases would otherwise expand to millions
    of nodes in OmegaConf, and object tags would end in a loader traceback (:class:`InvalidFileError` instead).
    """
    value = load_yaml_bounded(path, max_bytes=RUN_CONFIG_MAX_BYTES, what="run config")
    if value is None:
        return {}
    validate(value, dict[str, Any], path=path)
    validate(value, RunConfigFile, path=path)
    try:
        return OmegaConf.to_container(OmegaConf.create(value), resolve=False)
    except Exception as error:  # what OmegaConf refuses in a YAML mapping (e.g. a key of an odd type)
        raise InvalidFileError(path, f"not a run config OmegaConf can read: {error}") from None


def load_run_config(ckpt_path: Path) -> dict[str, Any] | None:
    path = run_config_path(ckpt_path)
    if not path.is_file():
        return None
    return read_run_config(path)


CHECKPOINT_CHOICES = ("auto", "best", "last")


def best_named_by_last(last: Path) -> Path | None:
    """The best checkpoint that ``last.ckpt``'s ModelCheckpoint state names, if it is in the same folder."""
    try:
        state = load_checkpoint_file(last, mmap=True).get("callbacks") or {}  # not the weights: a pretrained
        # generator's last.ckpt is hundreds of MB
    except (ValueError, FileNotFoundError):
        return None
    for key, value in state.items():
        if str(key).startswith("ModelCheckpoint") and isinstance(value, Mapping) and value.get("best_model_path"):
            candidate = last.parent / Path(str(value["best_model_path"])).name
            if candidate.is_file() and candidate != last:
                return candidate
    return None


def choose_checkpoint(folder: Path, which: str = "auto") -> Path | None:
    """A run folder's checkpoint: ``best`` (the best-*.ckpt that last.ckpt names, else the latest), ``last``,
    ``auto`` (best, else last); None when there is none."""
    if which not in CHECKPOINT_CHOICES:
        raise ValueError(f"checkpoint={which!r} must be one of {CHECKPOINT_CHOICES} (or pass ckpt_path=PATH)")
    folder = folder / "checkpoints"
    last = folder / "last.ckpt"
    best: Path | None = None
    if which in ("auto", "best"):
        candidates = sorted(folder.glob("best-*.ckpt"), key=lambda p: p.stat().st_mtime)
        if len(candidates) > 1 and last.is_file():
            best = best_named_by_last(last)
        best = best or (candidates[-1] if candidates else None)
        if best is not None or which == "best":
            return best
    return last if last.is_file() else None


def resolve_checkpoint_path(path: str | Path, key: str = "ckpt_path", which: str = "auto") -> Path:
    """The checkpoint file that ``key=path`` names: a regular file as it is; a run folder (or its
    ``checkpoints/``) by its ``which`` checkpoint (see :func:`choose_checkpoint`), said in one line.

    Anything else is refused before it is opened (a FIFO would block the reader forever).
    """
    path = Path(path).expanduser()
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"{key}={path} does not exist") from None
    except OSError as error:
        raise ValueError(f"{key}={path} cannot be read: {error.strerror or type(error).__name__}") from None
    if stat.S_ISDIR(mode):
        folder = path.parent if path.name == "checkpoints" and not (path / "checkpoints").is_dir() else path
        chosen = choose_checkpoint(folder, which)
        if chosen is None:
            raise FileNotFoundError(
                f"{key}={path} is a folder without a checkpoint (checkpoints/best-*.ckpt or checkpoints/last.ckpt); "
                "pass a run folder or a .ckpt file"
            )
        kind = "last" if chosen.name == "last.ckpt" else "best"
        print(f"{key}={path}: using its {kind} checkpoint {chosen}", file=sys.stderr, flush=True)
        return chosen
    if not stat.S_ISREG(mode):
        raise ValueError(
            f"{key}={path} is not a regular file (a FIFO, socket or device); pass a .ckpt file or a run folder"
        )
    return path


def _not_a_checkpoint(key: str, path: Path, why: str) -> ValueError:
    return ValueError(f"{key}={path} is not a PyTorch checkpoint ({why}); pass a .ckpt file written by training")


def _check_torch_format(path: Path, key: str) -> bool:
    """A file torch.save wrote starts as a zip archive (or, in the legacy format, a pickle protocol >= 2 opcode):
    anything else is refused here, before torch's unpickler fails on it with IndexError, KeyError...
    True for a zip archive (the format since torch 1.6, the only one torch can memory-map)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
    except OSError as error:
        raise ValueError(f"{key}={path} cannot be read: {error.strerror or type(error).__name__}") from None
    if not head:
        raise _not_a_checkpoint(key, path, "the file is empty")
    if head.startswith(b"PK"):
        if not zipfile.is_zipfile(path):
            raise _not_a_checkpoint(key, path, "a damaged or truncated zip archive")
        return True
    if head[:1] != b"\x80":
        raise _not_a_checkpoint(key, path, "neither a zip archive nor a pickle")
    return False


def load_checkpoint_file(
    path: str | Path,
    key: str = "ckpt_path",
    map_location: str | torch.device = "cpu",
    which: str = "auto",
    mmap: bool = False,
) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` of an empdg checkpoint; clear errors naming ``key`` otherwise.

    ``path`` may be a run folder (its ``which`` checkpoint, see :func:`resolve_checkpoint_path`). Only tensors
    and plain values are unpickled: a file that holds anything else (objects whose unpickling could run code)
    is refused before any of it runs. ``mmap``: the tensors stay in the file until read (for a caller that reads
    only plain values, such as the callbacks' state), where the format allows it.
    """
    path = resolve_checkpoint_path(path, key, which)
    zipped = _check_torch_format(path, key)
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap and zipped)
    except pickle.UnpicklingError as error:
        culprit = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        if culprit is None:  # an opcode the weights-only unpickler does not know: bytes that are no checkpoint
            raise _not_a_checkpoint(key, path, "its pickle cannot be read") from None
        # `from None`: torch's own message suggests retrying with weights_only=False, which is exactly
        # what must not be done with a file of unknown origin
        raise ValueError(
            f"{key}={path} was refused as unsafe: it holds pickled objects other than tensors and plain "
            f"values (it refers to {culprit.group(1)}), which torch.load(weights_only=True) does not load because "
            f"unpickling them could run code. It is not an empdg checkpoint (those hold only weights and plain "
            f"values); nothing in it was executed."
        ) from None
    except OSError as error:
        raise ValueError(f"{key}={path} cannot be read: {error.strerror or type(error).__name__}") from None
    except (RuntimeError, EOFError, IndexError, KeyError, ValueError, TypeError, AttributeError) as error:
        # what torch's readers raise on a damaged archive or pickle (e.g. IndexError: pop from empty list)
        raise _not_a_checkpoint(
            key, path, f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else 'damaged'}"
        ) from None
    hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    if not hparams or "state_dict" not in checkpoint:
        raise ValueError(f"{key}={path} is not an empdg Lightning checkpoint (no hyper_parameters/state_dict)")
    if not isinstance(hparams, dict) or not isinstance(checkpoint["state_dict"], dict):
        raise ValueError(
            f"{key}={path} is not an empdg Lightning checkpoint (hyper_parameters/state_dict are not mappings)"
        )
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


def _follows(generator: torch.nn.Module, weights: torch.Tensor | None):
    """``weights`` on the generator's device at each call (a chat moved to a GPU), as training's buffers follow
    their module; copied once per device, not per call."""
    copies: dict[torch.device, torch.Tensor] = {}

    def on_device() -> torch.Tensor | None:
        if weights is None:
            return None
        device = next(generator.parameters()).device
        if device not in copies:
            copies.clear()
            copies[device] = weights.to(device)
        return copies[device]

    return on_device


def inference_bundle(hparams: Mapping[str, Any], with_critics: bool = True) -> InferenceBundle:
    """The generator, vocabulary and (``with_critics``: those the run trained) critics that ``hparams`` -- a
    checkpoint's ``hyper_parameters`` -- describe, freshly initialised: what training builds, less its machinery."""
    hparams = migrate_hparams(hparams)  # a run stored with older keys: today's (the one migration)
    model, adversarial = hparams["model"], hparams["adversarial"]
    bundle = InferenceBundle.build(model, hparams["vocab_tokens"], hparams.get("vocab_spec"))
    if with_critics:
        settings = typed(AdversarialConfig, adversarial, "adversarial")
        sizes = bundle.generator.sizes
        critics = build_critics(settings, sizes.emb_dim, sizes.hidden_dim)
        if critics:
            emotion, match = critic_vocab_weights(bundle.vocab, settings.critic.word_match)
            generator = bundle.generator
            emotion_vocab, match_vocab = _follows(generator, emotion), _follows(generator, match)
            bundle.critics = critic_panel(settings, generator, critics, emotion_vocab, match_vocab)
    return bundle


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", with_critics: bool = True
) -> LoadedCheckpoint:
    """Load weights-only, rebuild the generator (and ``with_critics`` the critics) in eval mode; clear errors for
    non-EmpDG files."""
    path = resolve_checkpoint_path(path, "ckpt_path")
    checkpoint = load_checkpoint_file(path, "ckpt_path", map_location)
    hparams = with_local_pretrained(checkpoint["hyper_parameters"], path)
    bundle = inference_bundle(hparams, with_critics)
    try:
        bundle.load_state_dict(checkpoint["state_dict"])
    except ValueError as error:  # an edited file, or hyper-parameters of another model
        raise ValueError(f"ckpt_path={path}: {error}; pass a checkpoint file as training wrote it") from None
    bundle.eval()
    return LoadedCheckpoint(bundle, dict(hparams), load_run_config(path), path.resolve())
