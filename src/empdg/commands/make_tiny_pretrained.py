"""``python -m empdg.make_tiny_pretrained OUT_DIR --family seq2seq|causal``: a tiny RANDOM pretrained folder.

The work is :func:`empdg.models.tiny_pretrained.make_tiny_pretrained` (tests, fixtures and benchmarks call
it directly); this module is its command line.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from empdg.errors import exit_on_user_error
from empdg.models.tiny_pretrained import FAMILIES, README_MARKER, make_tiny_pretrained

__all__ = ["README_MARKER", "main", "make_tiny_pretrained"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m empdg.make_tiny_pretrained",
        description="Build a tiny RANDOM Hugging Face model + tokenizer for tests (not a language model).",
    )
    parser.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="folder to write (new, empty, or a tiny model)")
    parser.add_argument("--family", required=True, choices=FAMILIES, help="seq2seq (BART) or causal (GPT-2)")
    parser.add_argument("--vocab-size", type=int, default=1000, help="BPE vocabulary size (default 1000)")
    parser.add_argument("--layers", type=int, default=2, help="layers (each of encoder and decoder for seq2seq)")
    parser.add_argument("--hidden", type=int, default=64, help="hidden size (default 64)")
    parser.add_argument("--heads", type=int, default=4, help="attention heads (default 4)")
    parser.add_argument("--ffn", type=int, default=128, help="feed-forward inner size (default 128)")
    parser.add_argument("--max-positions", type=int, default=512, help="maximum sequence length (default 512)")
    parser.add_argument("--seed", type=int, default=0, help="weight initialisation seed (default 0)")
    parser.add_argument("--force", action="store_true", help="write into a non-empty folder that is not a tiny model")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    with exit_on_user_error():
        make_tiny_pretrained(
            args.out_dir, args.family, vocab_size=args.vocab_size, layers=args.layers, hidden=args.hidden,
            heads=args.heads, ffn=args.ffn, max_positions=args.max_positions, seed=args.seed, force=args.force,
        )  # fmt: skip
