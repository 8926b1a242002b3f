"""A sentence encoder for the metrics that read meaning: all-MiniLM-L6-v2 from its registry package.

``encode(texts)`` gives one unit-length vector per text ``[n, 384]``, pooled as the checkpoint's own
sentence-transformers config says (``1_Pooling/config.json``: mean over real tokens for this model; a
``Normalize`` module in ``modules.json``: unit length), so cosine similarity is a dot product and the
figures match the model card's. Loaded once per process (:func:`sentence_encoder`), in float32 on CPU
unless asked otherwise, in eval mode, with no gradient: the metric is deterministic for a given input.

``transformers`` is imported when the encoder is built, never at import time.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from empdg.data.packaged_weights import MINILM_L6_V2, WeightsError, verified

POOLING_MODES = ("cls", "mean", "max")


def _pooling(folder: Path) -> tuple[str, bool]:
    """(mode, normalise) from the sentence-transformers files of ``folder``."""
    config = json.loads((folder / "1_Pooling" / "config.json").read_text(encoding="utf-8"))
    chosen = [mode for mode in POOLING_MODES if config.get(f"pooling_mode_{mode}_token" if mode == "cls"
                                                                     else f"pooling_mode_{mode}_tokens")]  # fmt: skip
    if len(chosen) != 1:
        raise ValueError(f"{folder}: expected one pooling mode of {POOLING_MODES}, found {chosen or 'none'}")
    modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
    normalise = any(str(module.get("type", "")).endswith("Normalize") for module in modules)
    return chosen[0], normalise


class SentenceEncoder:
    """A Hugging Face BERT-style encoder with sentence-transformers pooling; ``encode`` -> ``[n, dim]``."""

    def __init__(self, folder: str | Path, *, max_length: int = 128, batch_size: int = 64, device: str = "cpu"):
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # "Loading weights" bars on stderr, once per process
        self.folder = Path(folder)
        self.mode, self.normalise = _pooling(self.folder)
        self.tokenizer = AutoTokenizer.from_pretrained(self.folder)
        self.model = AutoModel.from_pretrained(self.folder, dtype=torch.float32).to(device).eval()
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = device
        self.dim = int(self.model.config.hidden_size)

    def _pool(self, states: Tensor, mask: Tensor) -> Tensor:
        if self.mode == "cls":
            return states[:, 0]
        keep = mask.unsqueeze(-1).to(states.dtype)
        if self.mode == "max":
            return states.masked_fill(keep == 0, float("-inf")).amax(dim=1)
        return (states * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1e-9)

    def encode(self, texts: Sequence[str]) -> Tensor:
        """``[len(texts), dim]`` float32 on CPU; an empty text encodes as the tokenizer's [CLS] [SEP] alone.

        Each distinct text is encoded once (models that barely speak repeat a few replies thousands of times),
        in order of length so that a batch pads little.
        """
        unique = sorted(set(texts), key=lambda text: (len(text), text))
        if not unique:
            return torch.zeros(0, self.dim)
        vectors = self._encode(unique)
        row = {text: i for i, text in enumerate(unique)}
        return vectors[torch.tensor([row[text] for text in texts], dtype=torch.long)]

    @torch.no_grad()
    def _encode(self, texts: Sequence[str]) -> Tensor:
        parts = []
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(
                list(texts[start : start + self.batch_size]), padding=True, truncation=True,
                max_length=self.max_length, return_tensors="pt",
            ).to(self.device)  # fmt: skip
            states = self.model(**batch).last_hidden_state
            pooled = self._pool(states, batch["attention_mask"])
            if self.normalise:
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
            parts.append(pooled.float().cpu())
        return torch.cat(parts)


@functools.lru_cache(maxsize=2)
def sentence_encoder(device: str = "cpu") -> SentenceEncoder:
    """The packaged all-MiniLM-L6-v2 (digests verified), loaded once per process and device."""
    folder = verified(MINILM_L6_V2)["config.json"].parent
    return SentenceEncoder(folder, device=device)


def encoder_available() -> bool:
    """Whether the packaged MiniLM is installed (``empdg[weights]``): what ``auto`` settings decide on."""
    try:
        MINILM_L6_V2.root()
    except WeightsError:
        return False
    return True


def encoder_fingerprint() -> str:
    """What identifies the encoder in cache keys: the pinned weights digest (a different model, a new key)."""
    return MINILM_L6_V2.digests["model.safetensors"]
