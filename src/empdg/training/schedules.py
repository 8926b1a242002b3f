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


def build_scheduler(optimizer: Optimizer, optim: OptimConfig, model_dim: int) -> LambdaLR | None:
    """``optim.scheduler`` for the generator's optimizer (its names are checked by OptimConfig)."""
    if optim.scheduler == "noam":
        return LambdaLR(optimizer, noam_lambda(model_dim, optim.warmup_steps, optim.noam_factor))
    return None
