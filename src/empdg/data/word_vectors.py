"""Optional pretrained word vectors (GloVe text format) for initialising the embedding table.

The original EmpDG initialises embeddings from GloVe; this loader keeps that optional and local (no
download). Words missing from the file get a small random init from a seeded generator so that runs
stay reproducible, and the PAD row is zero because it should contribute nothing.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch

from empdg.data.vocab import PAD_ID, Vocab

log = logging.getLogger(__name__)


def _is_header(parts: list[str]) -> bool:
    """A word2vec-style first line ``N D`` (two integers) rather than a vector."""
    return len(parts) == 2 and all(p.isdigit() for p in parts)


def _parses(values: list[str]) -> bool:
    try:
        for value in values:
            float(value)
    except ValueError:
        return False
    return True


def _check_dim(path: Path, file_dim: int, dim: int) -> int:
    if file_dim != dim:
        raise ValueError(
            f"{path} has {file_dim}-dimensional vectors but model.emb_dim={dim}; make them agree"
        )
    return file_dim


def load_word_vectors(path: Path, vocab: Vocab, dim: int, seed: int = 0) -> tuple[torch.Tensor, int]:
    """Return an embedding matrix ``[len(vocab), dim]`` and how many vocabulary words were found."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"word vector file {str(path)!r} not found; set model.embeddings.path to a local GloVe-format "
            "file or disable pretrained embeddings"
        )
    generator = torch.Generator().manual_seed(seed)
    weights = torch.randn(len(vocab), dim, generator=generator) * dim**-0.5
    found = torch.zeros(len(vocab), dtype=torch.bool)
    malformed: list[int] = []
    file_dim: int | None = None
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line_no, line in enumerate(handle, start=1):
            parts = line.rstrip().split(" ")
            if line_no == 1 and _is_header(parts):
                file_dim = _check_dim(path, int(parts[1]), dim)
                continue
            if not line.strip():
                continue
            if file_dim is None and len(parts) >= 2 and _parses(parts[1:]):
                file_dim = _check_dim(path, len(parts) - 1, dim)
            if len(parts) - 1 != dim or not parts[0]:
                malformed.append(line_no)
                continue
            idx = vocab.token_to_id(parts[0])
            if parts[0] not in vocab or found[idx]:
                continue
            if not _parses(parts[1:]):
                malformed.append(line_no)
                continue
            weights[idx] = torch.tensor([float(v) for v in parts[1:]], dtype=weights.dtype)
            found[idx] = True
    if malformed:
        warnings.warn(
            f"{path}: skipped {len(malformed)} malformed line(s) (first at line {malformed[0]})",
            RuntimeWarning,
            stacklevel=2,
        )
    weights[PAD_ID] = 0.0
    n_found = int(found.sum())
    log.info("word vectors: %d/%d vocabulary tokens found in %s", n_found, len(vocab), path)
    return weights, n_found
