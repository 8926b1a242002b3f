"""Every model's cost, side by side: parameters, MLE training step, greedy decoding of a batch.

    python -m empdg.benchmarks.models [runtime.num_threads=1] [data.batch_size=16] [...hydra overrides]

Each ``conf/model`` file at its paper size, on the same batches (the real ED sample when it is at
``../shared/data/ed-real-sample`` from the working directory, else the built-in corpus), in one
process: an MLE step is teacher forcing, backward and an Adam step; decoding is cached greedy decoding
of one batch, at most 30 tokens. The rounds interleave the models and the table gives each model's
median, so a load that comes and goes on a shared machine touches every model alike; ratios are to
the Transformer.
"""

from __future__ import annotations

import statistics
import sys
import time

import torch
from omegaconf import OmegaConf

from empdg.benchmarks.common import REAL_SAMPLE
from empdg.config import CONFIG_DIR, compose
from empdg.config.runtime import apply_runtime
from empdg.data.datamodule import DialogueDataModule
from empdg.data.dataset import collate
from empdg.models.decoding import DecodingConfig, decode
from empdg.training.run import build_module

ROUNDS = 5
STEPS_PER_ROUND = 3


def main(overrides: list[str]) -> None:
    data = (
        ["data=empathetic_dialogues", f"data.root={REAL_SAMPLE.resolve()}", "data.download=false"]
        if REAL_SAMPLE.exists()
        else ["data=builtin"]
    )
    base = [*data, "logger=none", "paths.output_dir=/tmp/empdg-bench", "adversarial=none", *overrides]
    cfg = compose("train", base)
    apply_runtime(cfg)
    datamodule = DialogueDataModule(OmegaConf.to_container(cfg.data, resolve=True), seed=0)
    datamodule.setup("fit")
    size = int(cfg.data.batch_size)
    items = datamodule.datasets["train"].items
    batches = [collate(items[i : i + size]) for i in range(0, size * 4, size)]
    print(f"threads={torch.get_num_threads()} batch={size} vocab={len(datamodule.vocab)}")

    names = sorted(path.stem for path in (CONFIG_DIR / "model").glob("*.yaml"))
    modules, optimizers = {}, {}
    for name in names:
        torch.manual_seed(0)
        modules[name] = build_module(compose("train", [*base, f"model={name}"]), datamodule)
        optimizers[name] = torch.optim.Adam(modules[name].generator.parameters(), lr=1e-4)
    step_times: dict[str, list[float]] = {name: [] for name in names}
    decode_times: dict[str, list[float]] = {name: [] for name in names}
    greedy = DecodingConfig(strategy="greedy", max_len=30)
    for round_ in range(ROUNDS + 1):  # round 0 warms up
        for name in names:
            module, optimizer = modules[name], optimizers[name]
            module.train()
            for i in range(STEPS_PER_ROUND):
                start = time.perf_counter()
                module.generator_losses(batches[i % len(batches)])["loss"].backward()
                optimizer.step()
                optimizer.zero_grad()
                if round_:
                    step_times[name].append(time.perf_counter() - start)
            module.eval()
            start = time.perf_counter()
            with torch.no_grad():
                decode(module.generator, batches[round_ % len(batches)], greedy)
            if round_:
                decode_times[name].append(time.perf_counter() - start)

    reference = statistics.median(step_times.get("transformer") or next(iter(step_times.values())))
    print("| model | parameters | MLE step (ms) | examples/s | x Transformer | greedy batch (ms) |")
    print("|---|---|---|---|---|---|")
    for name in names:
        step = statistics.median(step_times[name])
        params = sum(p.numel() for p in modules[name].generator.parameters() if p.requires_grad)
        print(
            f"| {name} | {params / 1e6:.2f} M | {step * 1000:.0f} | {size / step:.1f} | {step / reference:.2f} | "
            f"{statistics.median(decode_times[name]) * 1000:.0f} |"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
