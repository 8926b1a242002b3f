"""Learning-rate schedules; the Noam warm-up of the Transformer as used by MoEL/EmpDG."""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from empdg.config.schema import OptimConfig


def noam_lambda(model_dim: int, warmup: int, factor: float):
    """Multiplier on the base lr: factor * d^-0.5 * min(s^-0.5, s * warmup^-1.5), with s = step + 1."""

    def scale(step: int) -> float:
        s = step + 1
        return factor * model_dim**-0.5 * min(s**-0.5, s * warmup**-1.5)

    return scale


def linear_warmup_lambda(warmup: int, decay_steps: int | None):
    """Multiplier: rises linearly to 1 over ``warmup`` steps, then stays, or falls linearly to 0 at ``decay_steps``.

    The usual schedule for fine-tuning pretrained models (BERT, BART, GPT-2 recipes).
    """

    def scale(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if decay_steps is None:
            return 1.0
        return max(0.0, (decay_steps - step) / (decay_steps - warmup))

    return scale


def build_scheduler(optimizer: Optimizer, optim: OptimConfig, model_dim: int) -> LambdaLR | None:
    """``optim.scheduler`` for the generator's optimizer (its names are checked by OptimConfig)."""
    if optim.scheduler == "noam":
        return LambdaLR(optimizer, noam_lambda(model_dim, optim.warmup_steps, optim.noam_factor))
    if optim.scheduler == "linear_warmup":
        return LambdaLR(optimizer, linear_warmup_lambda(optim.warmup_steps, optim.decay_steps))
    return None
