"""Preprocessing time (cache miss) and cache-load time, projected to the full corpus.

    python -m empdg.benchmarks.preprocess [DATA_ROOT]     # default ../shared/data/ed-real-sample (from here)
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from empdg.benchmarks.common import REAL_SAMPLE
from empdg.data.conversation import SPLITS
from empdg.data.preprocess import prepare_examples

#: utterances in the official release (train + valid + test), for the projection
FULL_ED_UTTERANCES = 107_220


def count_utterances(root: Path) -> int:
    return sum(sum(1 for _ in (root / f"{split}.csv").open(encoding="utf-8")) - 1 for split in SPLITS)


def main(argv: list[str]) -> None:
    root = Path(argv[0]) if argv else REAL_SAMPLE
    with tempfile.TemporaryDirectory() as cache:
        cfg = {"source": "ed", "root": str(root), "cache_dir": cache, "download": False, "normalization": "moel"}
        start = time.perf_counter()
        first = prepare_examples(cfg)
        miss = time.perf_counter() - start
        start = time.perf_counter()
        second = prepare_examples(cfg)
        hit = time.perf_counter() - start
    assert not first.cache_hit and second.cache_hit
    utterances = count_utterances(root)
    scale = FULL_ED_UTTERANCES / utterances
    print(f"data: {root} ({utterances} utterances; {first.description})")
    print(f"preprocess (cache miss): {miss:.2f} s   projected full ED: {miss * scale:.1f} s")
    print(f"cache load (cache hit):  {hit:.3f} s   projected full ED: {hit * scale:.2f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
