"""Learning-rate schedules; the Noam warm-up of the Transformer as used by MoEL/EmpDG."""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def noam_lambda(model_dim: int, warmup: int, factor: float):
    """Multiplier on the base lr: factor * d^-0.5 * min(s^-0.5, s * warmup^-1.5), with s = step + 1."""

    def scale(step: int) -> float:
        s = step + 1
        return factor * model_dim**-0.5 * min(s**-0.5, s * warmup**-1.5)

    return scale


def build_scheduler(
    optimizer: Optimizer, name: str, model_dim: int, warmup: int, factor: float
) -> LambdaLR | None:
    if name == "none":
        return None
    if name == "noam":
        return LambdaLR(optimizer, noam_lambda(model_dim, warmup, factor))
    raise ValueError(f"optim.scheduler={name!r} is unknown; choose 'none' or 'noam'")
