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

from empdg.data.errors import MissingDataError
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
        raise MissingDataError(
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


def load_packaged_glove(vocab: Vocab, dim: int, seed: int = 0) -> tuple[torch.Tensor, int]:
    """Like :func:`load_word_vectors`, from the packaged GloVe 6B 50-d vectors (``model.embeddings.source``).

    Looked up by index (the parquet word list, then the rows of the memory-mapped ``.npy``), no text parsing.
    Words GloVe lacks get random vectors with the found vectors' own scale (GloVe rows have norms near 5,
    far from the ``dim**-0.5`` scale of a random table), so no group of rows starts out louder than another.
    """
    import numpy as np
    import pyarrow.parquet as pq

    from empdg.data.packaged_weights import GLOVE_6B_50D

    if dim != 50:
        raise ValueError(
            f"model.embeddings.source={GLOVE_6B_50D.name} has 50-d vectors but model.emb_dim={dim}; "
            "set model.emb_dim=50 (the model projects it to model.hidden_dim)"
        )
    table = pq.read_table(GLOVE_6B_50D.path("glove_6B_index.parquet"))
    words = table.column(table.column_names[0]).to_pylist()
    row_of = {word: row for row, word in enumerate(words)}
    vectors = np.load(GLOVE_6B_50D.path("glove_6B_50d_emb.npy"), mmap_mode="r")
    if vectors.shape != (len(words), dim):
        raise ValueError(f"{GLOVE_6B_50D.distribution}: vectors {vectors.shape} do not match {len(words)} words")
    ids = [i for i, token in enumerate(vocab.tokens) if token in row_of and i != PAD_ID]
    rows = [row_of[vocab.tokens[i]] for i in ids]
    found_vectors = torch.from_numpy(np.asarray(vectors[np.asarray(rows, dtype=np.int64)], dtype=np.float32))
    scale = float(found_vectors.std()) if len(ids) > 1 else dim**-0.5
    generator = torch.Generator().manual_seed(seed)
    weights = torch.randn(len(vocab), dim, generator=generator) * scale
    if ids:
        weights[torch.tensor(ids)] = found_vectors
    weights[PAD_ID] = 0.0
    log.info("packaged GloVe: %d/%d vocabulary tokens found", len(ids), len(vocab))
    return weights, len(ids)
