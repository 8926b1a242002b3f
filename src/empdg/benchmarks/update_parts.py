"""Where an adversarial update's time goes: a critic update and a generator update, part by part.

    python -m empdg.benchmarks.update_parts [--batches 20] [--device cuda] [--vocab-size N] [--json F] [overrides]

One model, ``--batches`` training batches of ``data.batch_size`` turns with a next utterance (the ED sample
where ``../shared`` has it, unless an override chooses the data), each given one critic update and then one
adversarial generator update, as training runs them (each optimizer's parameters alone requiring grad; frozen
ones stay frozen). Every part is timed by its own wall time less that of the parts it calls, so the parts and
``other`` add up to the update: the teacher-forced pass, the fake reply (the estimator's fake view: gumbel's
free-running decoding), greedy decoding (the critics' negatives, REINFORCE's baseline), sampled decoding
(REINFORCE's replies), the estimator's term, the critics' scores, the gradient penalty's forward (its
first-order gradient included), the gradient probe of a relative ``w_adv`` (two gradients at the decoder), the
backward pass and the optimizer step. Prints a JSON row per update kind (ms per update and share per part;
``--json PATH`` also writes them). ``--device cuda`` times on the GPU, synchronising at every part boundary
(:func:`synchronised_clock`); ``--vocab-size N`` pads a word vocabulary (the built-in corpus has a few hundred
words, the ED sample 6,474, the full ED about 20,000).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from empdg.benchmarks.common import sample_data_overrides

#: every part, in the order rows list them (an update kind lists those it spent time in, then ``other``)
PARTS = ("teacher-forced pass", "fake reply", "greedy decoding", "sampled decoding", "estimator term",
         "critic scores", "gradient penalty", "gradient probe", "backward", "optimizer step", "other")  # fmt: skip


class PartTimer:
    """Exclusive wall time per part: a part's time excludes the parts it calls (a stack of open parts).

    Seconds are kept under ``"<kind>: <part>"``, ``kind`` being the update under way (``timer.kind``)."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.kind = ""
        self.seconds: Counter[str] = Counter()
        self._stack: list[list] = []  # [start, seconds of the parts called inside]

    @contextlib.contextmanager
    def part(self, name: str) -> Iterator[None]:
        key = f"{self.kind}: {name}"
        entry = [self.clock(), 0.0]
        self._stack.append(entry)
        try:
            yield
        finally:
            self._stack.pop()
            spent = self.clock() - entry[0]
            self.seconds[key] += spent - entry[1]
            if self._stack:
                self._stack[-1][1] += spent

    def wrap(self, name: str | Callable[..., str], fn: Callable) -> Callable:
        """``fn`` timed as part ``name`` (or the part ``name(*args, **kwargs)`` names for that call)."""

        def timed(*args, **kwargs):
            with self.part(name(*args, **kwargs) if callable(name) else name):
                return fn(*args, **kwargs)

        return timed


def _decoding_part(encoded, strategy: str, *args, **kwargs) -> str:
    """``game.decode``'s part by its strategy: greedy (the critics' negatives, REINFORCE's baseline) or sampled
    (REINFORCE's fake reply, which then counts here rather than under the fake view that asked for it)."""
    return "greedy decoding" if strategy == "greedy" else "sampled decoding"


@contextlib.contextmanager
def instrumented(module, timer: PartTimer) -> Iterator[None]:
    """``module``'s game, generator and estimator with their parts timed; everything restored on exit."""
    import empdg.training.adversarial as adversarial

    game, generator = module.game, module.generator
    patches = [
        (game.estimator, "fake_view", "fake reply"),
        (game.estimator, "generator_term", "estimator term"),
        (game, "decode", _decoding_part),
        (game, "_penalty", "gradient penalty"),
        (game.panel, "score", "critic scores"),
        (generator, "forward", "teacher-forced pass"),
        (adversarial, "gradient_probe", "gradient probe"),
    ]
    saved = [(owner, attr, owner.__dict__.get(attr)) for owner, attr, _ in patches]
    try:
        for owner, attr, name in patches:
            setattr(owner, attr, timer.wrap(name, getattr(owner, attr)))
        yield
    finally:
        for owner, attr, original in saved:
            if original is None:
                delattr(owner, attr)  # an instance attribute over the class's method
            else:
                setattr(owner, attr, original)


def timed_updates(module, batches: list[dict], timer: PartTimer) -> tuple[float, float]:
    """Seconds of one critic update then one generator update on each batch (parts into ``timer``)."""
    trainable = [p for p in module.parameters() if p.requires_grad]  # frozen ones (embeddings, an encoder) stay so
    critic_params = {id(p) for p in module.critics.parameters()}
    sides = {"critic": [p for p in trainable if id(p) in critic_params],
             "generator": [p for p in trainable if id(p) not in critic_params]}  # fmt: skip
    d_opt = torch.optim.Adam(sides["critic"], lr=1e-4)
    g_opt = torch.optim.Adam(sides["generator"], lr=1e-4)
    totals = {"critic": 0.0, "generator": 0.0}
    kinds = (("critic", lambda b: module.critic_losses(b)[0], d_opt),
             ("generator", lambda b: module.adversarial_generator_loss(b)[0], g_opt))  # fmt: skip
    for batch in batches:
        for kind, loss_fn, opt in kinds:
            for p in trainable:  # as training toggles its optimizers: the other side is frozen meanwhile
                p.requires_grad_(False)
            for p in sides[kind]:
                p.requires_grad_(True)
            timer.kind = kind
            start = timer.clock()
            with timer.part("other"):
                loss = loss_fn(batch)
                with timer.part("backward"):
                    loss.backward()
                with timer.part("optimizer step"):
                    opt.step()
                    opt.zero_grad(set_to_none=True)
            totals[kind] += timer.clock() - start
    for p in trainable:
        p.requires_grad_(True)
    return totals["critic"], totals["generator"]


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    from empdg.benchmarks.gpu import fit_datamodule
    from empdg.config import compose
    from empdg.config.runtime import apply_runtime
    from empdg.data.dataset import batch_to_device, collate
    from empdg.training.run import build_module

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (each part boundary synchronises)")
    parser.add_argument("--vocab-size", type=int, default=None, help="pad a word vocabulary to this size")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args, overrides = parser.parse_known_args(argv)
    device = torch.device(args.device)
    base = ["logger=none", "paths.output_dir=/tmp/empdg-bench"]
    cfg = compose("train", [*sample_data_overrides(overrides), *base, *overrides])
    apply_runtime(cfg)
    datamodule = fit_datamodule(cfg, args.vocab_size)
    items = [it for it in datamodule.datasets["train"].items if it.has_feedback]
    size = int(cfg.data.batch_size)
    turns = [items[i % len(items)] for i in range(size * (args.batches + 1))]  # cycled when too few
    batches = [batch_to_device(collate(turns[i : i + size]), device) for i in range(0, len(turns), size)]
    torch.manual_seed(0)
    module = build_module(cfg, datamodule).to(device)
    module.train()
    timer = PartTimer(synchronised_clock(device))
    with instrumented(module, timer):
        timed_updates(module, batches[:1], timer)  # warm-up, not counted
        timer.seconds.clear()
        critic_s, generator_s = timed_updates(module, batches[1:], timer)
    rows = []
    for kind, seconds in (("critic", critic_s), ("generator", generator_s)):
        spent = {name: timer.seconds[f"{kind}: {name}"] for name in PARTS if f"{kind}: {name}" in timer.seconds}
        n = args.batches
        row = {"update": kind, "model": cfg.model.name, "estimator": cfg.adversarial.estimator, "batch": size,
               "batches": n, "device": str(device), "vocab": len(datamodule.vocab),
               "threads": torch.get_num_threads(), "ms": 1000 * seconds / n,
               "parts_ms": {k: 1000 * v / n for k, v in spent.items()},
               "parts_share": {k: v / seconds for k, v in spent.items()}}  # fmt: skip
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    return rows


def synchronised_clock(device: torch.device) -> Callable[[], float]:
    """``time.perf_counter``, after the GPU's queued work on a CUDA ``device`` has finished: a part's time is then
    its kernels' as well as its launches' (and no part overlaps the next, which a real update would allow)."""
    if device.type != "cuda":
        return time.perf_counter

    def clock() -> float:
        torch.cuda.synchronize(device)
        return time.perf_counter()

    return clock


if __name__ == "__main__":
    main()
