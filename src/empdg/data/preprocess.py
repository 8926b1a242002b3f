"""Deterministic preprocessing with an on-disk cache keyed by a hash of inputs and settings.

Normalising and tagging the full corpus is the slow part of data preparation, so its result
(the normalised examples of every split) is pickled under ``data.cache_dir``. The key covers the
raw input (file contents for ED, generator settings for the built-in corpus) and
``PREPROCESS_VERSION``, which must be bumped whenever normalisation or example construction
changes, so a stale cache can never be read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from empdg.data.conversation import SPLITS, Conversation
from empdg.data.examples import DialogueExample, build_examples

log = logging.getLogger(__name__)

PREPROCESS_VERSION = 1
SOURCES = ("builtin", "ed")


@dataclass
class PreparedData:
    examples: dict[str, list[DialogueExample]]
    cache_path: Path
    cache_hit: bool
    seconds: float
    description: str


def _sha256_files(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _builtin_settings(data_cfg: Mapping[str, Any]) -> dict[str, Any]:
    builtin = data_cfg["builtin"]
    return {
        k: int(builtin[k]) for k in ("seed", "train_per_emotion", "valid_per_emotion", "test_per_emotion")
    }


def cache_key(data_cfg: Mapping[str, Any]) -> str:
    """Hash of everything the cached examples depend on (never of paths or timestamps)."""
    source = data_cfg["source"]
    if source == "builtin":
        from empdg.data.builtin import BUILTIN_VERSION

        payload: dict[str, Any] = {"builtin": _builtin_settings(data_cfg), "builtin_version": BUILTIN_VERSION}
    elif source == "ed":
        root = Path(data_cfg["root"])
        payload = {"ed_sha256": _sha256_files([root / f"{split}.csv" for split in SPLITS])}
    else:
        raise ValueError(f"data.source={source!r} is unknown; choose one of {SOURCES}")
    payload["normalization"] = data_cfg.get("normalization", "moel")
    payload["version"] = PREPROCESS_VERSION
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def load_conversations(data_cfg: Mapping[str, Any]) -> dict[str, list[Conversation]]:
    """Read the raw conversations of every split from the configured source."""
    source = data_cfg["source"]
    if source == "builtin":
        from empdg.data.builtin import generate_builtin_corpus

        return generate_builtin_corpus(**_builtin_settings(data_cfg))
    if source == "ed":
        from empdg.data.ed_csv import load_ed_splits

        conversations, _reports = load_ed_splits(Path(data_cfg["root"]))
        return conversations
    raise ValueError(f"data.source={source!r} is unknown; choose one of {SOURCES}")


def ensure_source_available(data_cfg: Mapping[str, Any]) -> None:
    """For ED: download the official archive when ``data.root`` lacks the CSVs (if allowed)."""
    if data_cfg["source"] != "ed":
        return
    root = Path(data_cfg["root"])
    if all((root / f"{split}.csv").exists() for split in SPLITS):
        return
    if not data_cfg.get("download", True):
        raise FileNotFoundError(
            f"data.root={root} does not hold train.csv, valid.csv and test.csv and data.download=false. "
            "Extract the official empatheticdialogues.tar.gz there, or set data.download=true."
        )
    from empdg.data.download import ensure_ed_data

    ensure_ed_data(root, url=data_cfg["url"], sha256=data_cfg.get("archive_sha256"))


def _tag_functions(scheme: str):
    from empdg.data.emotion_words import get_lexicon
    from empdg.data.text import normalize

    lexicon = get_lexicon()
    return partial(normalize, scheme=scheme), lexicon.emotion_words, lexicon.emotion_mask


def prepare_examples(data_cfg: Mapping[str, Any]) -> PreparedData:
    """Return normalised examples for all splits, from the cache when its key matches."""
    start = time.perf_counter()
    ensure_source_available(data_cfg)
    key = cache_key(data_cfg)
    cache_path = Path(data_cfg["cache_dir"]) / f"{data_cfg['source']}-{key}.pkl"
    if cache_path.exists():
        with cache_path.open("rb") as handle:
            examples = pickle.load(handle)
        hit = True
    else:
        normalize, emotion_words, emotion_mask = _tag_functions(data_cfg.get("normalization", "moel"))
        conversations = load_conversations(data_cfg)
        examples = {
            split: build_examples(conversations[split], normalize, emotion_words, emotion_mask)
            for split in SPLITS
        }
        _atomic_pickle(examples, cache_path)
        hit = False
    seconds = time.perf_counter() - start
    sizes = ", ".join(f"{split}={len(examples[split])}" for split in SPLITS)
    description = f"{data_cfg['source']} ({sizes} examples; cache {'hit' if hit else 'miss'}: {cache_path})"
    log.info("data: %s in %.2fs", description, seconds)
    return PreparedData(examples, cache_path, hit, seconds, description)


def _atomic_pickle(obj: object, path: Path) -> None:
    """Write-then-rename so a crashed or concurrent run never leaves a half-written cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            pickle.dump(obj, handle, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
