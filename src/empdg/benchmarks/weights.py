"""The packaged real weights' costs: digest checks, GloVe lookup, MiniLM metrics per 1,000 replies.

    python -m empdg.benchmarks.weights [DATA_ROOT] runtime.num_threads=1
        # DATA_ROOT default ../shared/data/ed-real-sample (from here); its vocabulary and test replies

Figures: verifying each package's pinned digests (once per process), building the GloVe table for the
data's vocabulary (index read + row gather), its coverage, loading MiniLM, and the meaning metrics (three
encodings: replies, references, last turns) per 1,000 distinct replies. One process, one thread by default.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

from empdg.benchmarks.common import REAL_SAMPLE, peak_rss_mib
from empdg.data.packaged_weights import GLOVE_6B_50D, MINILM_L6_V2, verified
from empdg.data.preprocess import prepare_examples
from empdg.data.vocab import Vocab
from empdg.data.word_vectors import load_packaged_glove


def _timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def main(argv: list[str]) -> None:
    threads = next((int(a.split("=", 1)[1]) for a in argv if a.startswith("runtime.num_threads=")), 1)
    paths = [a for a in argv if "=" not in a]
    torch.set_num_threads(threads)
    root = Path(paths[0]) if paths else REAL_SAMPLE
    with tempfile.TemporaryDirectory() as cache:
        cfg = {"source": "ed", "root": str(root), "cache_dir": cache, "download": False, "normalization": "moel"}
        examples = prepare_examples(cfg).examples
    vocab = Vocab.build([e.target for e in examples["train"]] + [u for e in examples["train"] for u in e.context])
    _, glove_check = _timed(lambda: verified(GLOVE_6B_50D))
    _, minilm_check = _timed(lambda: verified(MINILM_L6_V2))
    (_, found), lookup = _timed(lambda: load_packaged_glove(vocab, 50))
    print(f"data: {root}; threads: {threads}")
    print(f"digest check: glove-6b-50d {glove_check:.2f} s, minilm-l6-v2 {minilm_check:.2f} s (once per process)")
    print(f"GloVe table for {len(vocab)} words: {lookup:.2f} s, coverage {found / len(vocab):.1%}")

    from empdg.models.reply_meaning import meaning_scores, training_split_classifier
    from empdg.models.sentence_encoder import sentence_encoder

    encoder, load = _timed(sentence_encoder)
    print(f"MiniLM load: {load:.2f} s")
    train = examples["train"]
    _, fit = _timed(lambda: training_split_classifier(train, encoder))
    print(f"reply-emotion classifier on {len(train)} training replies (encode + fit, uncached): {fit:.1f} s")
    test = examples["test"][:1000]
    refs = [" ".join(e.target) for e in test]
    replies = [f"{ref} ." for ref in refs]  # distinct replies of the references' lengths
    turns = [" ".join(e.context[-1]) for e in test]
    _, score = _timed(lambda: meaning_scores(replies, refs, turns, encoder))
    print(f"meaning metrics: {score / len(test) * 1000:.1f} s per 1,000 distinct replies (3 encodings each)")
    print(f"peak RSS: {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main(sys.argv[1:])
