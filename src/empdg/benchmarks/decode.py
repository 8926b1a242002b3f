"""Cached vs uncached greedy decoding on a paper-size EmpDG generator (random weights, CPU).

``python -m empdg.benchmarks.decode [--batch-size 32 --new-tokens 30 --vocab-size 20000 ...]``

Both paths produce the same tokens (checked here too); the ratio shows what the key/value cache buys.
A breakdown times the vocabulary projection alone, because with a 300-d, 1-layer decoder and a
20k vocabulary that projection, not attention, is most of the work -- and the uncached decoder
re-projects every prefix position at every step.
"""

from __future__ import annotations

import argparse

import torch
from omegaconf import OmegaConf

from empdg.benchmarks.common import median_seconds
from empdg.config import compose
from empdg.data.vocab import CLS_ID, LAB_ID, SPK_ID
from empdg.models.decoding import DecodingConfig, decode
from empdg.models.empdg import EmpDGGenerator
from empdg.models.registry import build_generator


def paper_model(vocab_size: int) -> EmpDGGenerator:
    """An untrained generator of the ``model=empdg`` group as the packaged configs compose it."""
    values = OmegaConf.to_container(compose("train", ["model=empdg"]).model, resolve=True)
    model = build_generator(values, vocab_size=vocab_size)
    if not isinstance(model, EmpDGGenerator):  # the breakdown times EmpDG's output layer
        raise TypeError(f"model=empdg built a {type(model).__name__}, not the EmpDG generator")
    return model


def synthetic_batch(batch_size: int, context_len: int, emotion_len: int, vocab_size: int) -> dict:
    """Random in-vocabulary contexts of a typical ED length (no padding, no copying)."""
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(8, vocab_size, (batch_size, context_len), generator=gen)
    ids[:, 0] = CLS_ID
    emo = torch.randint(8, vocab_size, (batch_size, emotion_len), generator=gen)
    emo[:, 0] = LAB_ID
    return {
        "context_ids": ids,
        "context_pad_mask": torch.zeros_like(ids, dtype=torch.bool),
        "context_state": torch.full_like(ids, SPK_ID),
        "context_ext_ids": ids,
        "emotion_context_ids": emo,
        "emotion_context_pad_mask": torch.zeros_like(emo, dtype=torch.bool),
        "max_oov": 0,
    }


@torch.no_grad()
def breakdown(model: EmpDGGenerator, batch: dict, steps: int, repeats: int) -> dict[str, float]:
    """Seconds spent in the pieces: encoder, and the vocabulary projection as each path runs it."""
    hidden = model.sizes.hidden_dim
    bsz = batch["context_ids"].shape[0]
    states = {t: torch.randn(bsz, t, hidden) for t in range(1, steps + 1)}

    def project(lengths: range) -> None:
        for t in lengths:
            torch.log_softmax(model.output(states[t]), dim=-1)

    return {
        "encode": median_seconds(lambda: model.encode(batch), repeats),
        "projection_cached": median_seconds(lambda: project(range(1, 2)), repeats) * steps,
        "projection_uncached": median_seconds(lambda: project(range(1, steps + 1)), repeats),
    }


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=30)
    parser.add_argument("--vocab-size", type=int, default=20_000)
    parser.add_argument("--context-len", type=int, default=64)
    parser.add_argument("--emotion-len", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = paper_model(args.vocab_size).eval()
    batch = synthetic_batch(args.batch_size, args.context_len, args.emotion_len, args.vocab_size)
    n = args.new_tokens
    cfgs = {
        cached: DecodingConfig(strategy="greedy", max_len=n, min_len=n, use_cache=cached) for cached in (True, False)
    }
    same = torch.equal(decode(model, batch, cfgs[True]), decode(model, batch, cfgs[False]))
    cached = median_seconds(lambda: decode(model, batch, cfgs[True]), args.repeats)
    uncached = median_seconds(lambda: decode(model, batch, cfgs[False]), args.repeats)
    parts = breakdown(model, batch, n, args.repeats)
    cfg = model.settings
    print(
        f"model: hidden {cfg.hidden_dim}, {cfg.num_layers} layer(s), {cfg.num_heads} heads, attn {cfg.attn_dim}, "
        f"ff {cfg.ff_dim}, vocab {model.sizes.vocab_size}; batch {args.batch_size}, context {args.context_len}, "
        f"{n} new tokens, {torch.get_num_threads()} thread(s), median of {args.repeats}"
    )
    print(f"identical tokens: {same}")
    print(f"cached greedy:   {cached * 1000:8.1f} ms")
    print(f"uncached greedy: {uncached * 1000:8.1f} ms")
    print(f"speed-up:        {uncached / cached:8.2f}x")
    print(
        f"breakdown: encode {parts['encode'] * 1000:.1f} ms; vocabulary projection + log-softmax "
        f"{parts['projection_cached'] * 1000:.1f} ms cached ({parts['projection_cached'] / cached:.0%} of it), "
        f"{parts['projection_uncached'] * 1000:.1f} ms uncached ({parts['projection_uncached'] / uncached:.0%} of it)"
    )
    return {"cached_s": cached, "uncached_s": uncached, "speedup": uncached / cached, **parts}


if __name__ == "__main__":
    main()
