"""Training-step cost: MLE step vs one adversarial cycle per estimator (reinforce, soft, gumbel), throughput, memory.

    python -m empdg.benchmarks.train_step [hydra overrides ...]     # e.g. runtime.num_threads=2

Defaults: paper-size EmpDG (model=empdg), batch 16, on the real ED sample when it is at
``../shared/data/ed-real-sample`` from the working directory (else the built-in corpus). Times are
medians of repeated updates in one process, so the ratios compare like with like on a shared, noisy
machine.
"""

from __future__ import annotations

import sys

import torch
from omegaconf import OmegaConf

from empdg.benchmarks.common import REAL_SAMPLE, median_seconds, peak_rss_mib
from empdg.config import compose
from empdg.config.runtime import apply_runtime
from empdg.data.datamodule import DialogueDataModule
from empdg.data.dataset import collate
from empdg.training.run import build_module


def time_updates(module, batches: list[dict]) -> tuple[float, float, float]:
    """Median seconds of an MLE update, a critic update and an adversarial generator update."""
    g_opt = torch.optim.Adam(module.generator.parameters(), lr=1e-4)
    d_opt = torch.optim.Adam(module.critics.parameters(), lr=1e-4)
    position = [0]

    def next_batch() -> dict:
        position[0] += 1
        return batches[position[0] % len(batches)]

    def step(loss: torch.Tensor) -> None:
        loss.backward()
        g_opt.step()
        d_opt.step()
        g_opt.zero_grad()
        d_opt.zero_grad()

    mle = median_seconds(lambda: step(module.generator_losses(next_batch())["loss"]), repeats=10)
    critic = median_seconds(lambda: step(module.critic_losses(next_batch())[0]), repeats=10)
    generator = median_seconds(lambda: step(module.adversarial_generator_loss(next_batch())[0]), repeats=10)
    return mle, critic, generator


def main(overrides: list[str]) -> None:
    data = (
        ["data=empathetic_dialogues", f"data.root={REAL_SAMPLE.resolve()}", "data.download=false"]
        if REAL_SAMPLE.exists()
        else ["data=builtin"]
    )
    base = [*data, "logger=none", "paths.output_dir=/tmp/empdg-bench", *overrides]
    cfg = compose("train", base)
    apply_runtime(cfg)  # runtime.num_threads
    torch.manual_seed(0)
    datamodule = DialogueDataModule(OmegaConf.to_container(cfg.data, resolve=True), seed=0)
    datamodule.setup("fit")
    dataset = datamodule.datasets["train"]
    size = int(cfg.data.batch_size)
    with_feedback = [it for it in dataset.items if it.has_feedback]
    batches = [collate(with_feedback[i : i + size]) for i in range(0, size * 8, size)]
    print(f"threads={torch.get_num_threads()} batch={size} vocab={len(datamodule.vocab)} model={cfg.model.name}")

    results = {}
    for estimator in ("reinforce", "soft", "gumbel"):
        module = build_module(compose("train", [*base, f"adversarial.estimator={estimator}"]), datamodule)
        results[estimator] = time_updates(module, batches)
    mle = results["reinforce"][0]
    print(f"MLE step: {mle * 1000:.1f} ms   throughput: {size / mle:.1f} examples/s")
    n_critic, g_steps = int(cfg.adversarial.n_critic), int(cfg.adversarial.g_steps)
    for estimator, (_, critic, generator) in results.items():
        cycle = n_critic * critic + g_steps * generator
        mle_same_updates = (n_critic + g_steps) * mle
        print(
            f"{estimator:9s}: critic update {critic * 1000:.1f} ms, adversarial generator update "
            f"{generator * 1000:.1f} ms; cycle ({cfg.adversarial.n_critic} D + {cfg.adversarial.g_steps} G) "
            f"{cycle * 1000:.1f} ms = {cycle / mle:.2f} MLE steps "
            f"(x{cycle / mle_same_updates:.2f} the same number of MLE updates)"
        )
    print(f"peak RSS: {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main(sys.argv[1:])
