"""Bucketing key: what one training epoch's MLE and critic updates cost under each ``data.bucket_by``.

    python -m empdg.benchmarks.bucketing [--batch-size 16] [--batches N] [--repeats 1] [hydra overrides ...]

One model and one set of turns (those with a next utterance, which the critics read) under every key: the batches
the training sampler draws in epoch 0 of seed 0 (the first ``--batches``, all by default), padded as training pads
them; an MLE update and a critic update (gradient penalty included) on each, timed in total. The keys take turns
``--repeats`` times and each key's fastest pass counts, so a slow moment of a shared machine hits one pass, not
one key. Defaults: the configured model on the real ED sample where ``../shared`` has it, unless an override
chooses the data (else the built-in corpus); ``runtime.num_threads`` sets the threads. Prints a JSON row per key:
padded widths, seconds, and the ratio to ``context_reply``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from typing import Any

import torch

from empdg.benchmarks.common import sample_data_overrides
from empdg.benchmarks.gpu import fit_datamodule, make_updates, padded_widths, sampler_batches
from empdg.data.dataset import BUCKET_KEYS, collate


def epoch_seconds(update, count: int) -> float:
    """Seconds ``count`` calls of ``update`` take (one warm-up call first, not counted)."""
    update()
    start = time.perf_counter()
    for _ in range(count):
        update()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    from empdg.config import compose
    from empdg.config.runtime import apply_runtime
    from empdg.training.run import build_module

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--batches", type=int, default=None, help="the epoch's first N batches (default: all)")
    parser.add_argument("--repeats", type=int, default=1)
    args, overrides = parser.parse_known_args(argv)
    base = ["logger=none", "paths.output_dir=/tmp/empdg-bench"]
    cfg = compose("train", [*sample_data_overrides(overrides), *base, *overrides])
    apply_runtime(cfg)
    datamodule = fit_datamodule(cfg)
    items = [it for it in datamodule.datasets["train"].items if it.has_feedback]
    torch.manual_seed(0)
    module = build_module(cfg, datamodule)
    module.train()
    drawn = {k: sampler_batches(items, args.batch_size, {**datamodule.cfg, "bucket_by": k}) for k in BUCKET_KEYS}
    drawn = {k: batches[: args.batches] for k, batches in drawn.items()}
    collated = {k: [collate([items[i] for i in b]) for b in batches] for k, batches in drawn.items()}
    best: dict[str, dict[str, float]] = {k: {"mle_s": float("inf"), "critic_s": float("inf")} for k in BUCKET_KEYS}
    for _ in range(args.repeats):
        for key in BUCKET_KEYS:
            mle, critic, _ = make_updates(module, collated[key], contextlib.nullcontext())
            count = len(collated[key])
            best[key]["mle_s"] = min(best[key]["mle_s"], epoch_seconds(mle, count))
            best[key]["critic_s"] = min(best[key]["critic_s"], epoch_seconds(critic, count))
    rows = []
    for key in BUCKET_KEYS:
        row = {"bucket_by": key, "data": cfg.data.name, "batch": args.batch_size, "batches": len(drawn[key])}
        # which turns the timed batches hold: the same under every key unless --batches cuts the epoch
        row["turns"] = sorted(i for batch in drawn[key] for i in batch)
        row.update(padded_widths(items, drawn[key]), **best[key])
        for what in ("mle_s", "critic_s"):
            row[f"{what[:-2]}_ratio"] = best[key][what] / best["context_reply"][what]
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "turns"} | {"turns": len(row["turns"])}), flush=True)
    return rows


if __name__ == "__main__":
    main()
