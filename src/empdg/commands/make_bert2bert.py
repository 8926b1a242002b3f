"""``python -m empdg.make_bert2bert OUT_DIR [--source minilm-l6-v2]``: a BERT2BERT model from real weights.

The work is :func:`empdg.models.bert2bert.make_bert2bert` (tests and benchmarks call it directly); this
module is its command line.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from empdg.errors import exit_on_user_error
from empdg.models.bert2bert import LAYER_PICKS, README_MARKER, SOURCES, make_bert2bert

__all__ = ["README_MARKER", "main", "make_bert2bert"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m empdg.make_bert2bert",
        description="Build a BERT2BERT encoder-decoder (Rothe et al. 2020) from packaged BERT weights, offline.",
    )
    parser.add_argument(
        "out_dir", type=Path, metavar="OUT_DIR", help="folder to write (new, empty, or an earlier build)"
    )
    parser.add_argument("--source", default=SOURCES[0], choices=SOURCES,
                        help=f"the BERT checkpoint, from the package registry (default {SOURCES[0]})")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed of the new weights (cross-attention, head)")
    parser.add_argument("--force", action="store_true", help="write into a non-empty folder that is not a build")
    parser.add_argument(
        "--decoder-layers",
        type=int,
        default=None,
        metavar="N",
        help="keep N of the checkpoint's layers in the decoder (default: all; fewer: a CPU budget)",
    )
    parser.add_argument(
        "--decoder-pick",
        default=LAYER_PICKS[0],
        choices=LAYER_PICKS,
        help="which N layers: spread (evenly spaced, first and last included; default), first, last",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    with exit_on_user_error():
        make_bert2bert(args.out_dir, args.source, seed=args.seed, force=args.force,
                       decoder_layers=args.decoder_layers, decoder_pick=args.decoder_pick)  # fmt: skip
