"""Adversarial objectives for the EmpDG critics: WGAN-GP (paper default), weight-clipped WGAN, vanilla GAN."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def gradient_penalty(
    critic_fn: Callable[[Tensor], Tensor],
    real: Tensor,
    fake: Tensor,
    generator: torch.Generator | None = None,
    alpha: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """WGAN-GP term: (mean((‖∇D(x̂)‖₂ − 1)²), per-example norms [B]) at x̂ = α·real + (1−α)·fake.

    ``critic_fn`` maps x̂ (same shape as ``real``) to scores [B]; close masks and context over it. ``real``
    and ``fake`` must already share one shape (the caller pads to one length and masks). The norm runs
    over all positions and features, so padded positions count with whatever gradient the critic gives
    them, which is zero when the critic masks them (as ResponseCritic does). The graph is kept
    (``create_graph=True``) so the penalty trains the critic; no hooks or globals are involved. ``real``
    and ``fake`` are detached: the penalty only ever trains the critic, never the generator.
    ``alpha`` (one value per example, broadcastable or shape [B]) overrides the uniform draw, for tests.

    Computed in float32 with autocast off whatever the trainer's precision (as the critics score): a
    gradient norm near 1 taken in bf16 keeps about two significant digits of ``norm - 1``.
    """
    if real.shape != fake.shape:
        raise ValueError(f"real {tuple(real.shape)} and fake {tuple(fake.shape)} must be aligned to one shape")
    with torch.autocast(device_type=real.device.type, enabled=False):
        real, fake = _at_least_float32(real.detach()), _at_least_float32(fake.detach())
        view = (real.size(0),) + (1,) * (real.dim() - 1)
        if alpha is None:
            alpha = torch.rand(real.size(0), generator=generator, device=real.device, dtype=real.dtype)
        alpha = alpha.to(device=real.device, dtype=real.dtype).reshape(view)
        mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
        scores = _at_least_float32(critic_fn(mixed))
        (grads,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
        norms = grads.reshape(grads.size(0), -1).norm(p=2, dim=1)
        return ((norms - 1) ** 2).mean(), norms


def _at_least_float32(x: Tensor) -> Tensor:
    """bf16/fp16 up to float32; float32 and float64 (the exactness tests) as they are."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def wgan_critic_loss(d_real: Tensor, d_fake: Tensor) -> Tensor:
    """Critic minimises E[D(fake)] − E[D(real)], i.e. maximises the Wasserstein estimate."""
    return d_fake.mean() - d_real.mean()


def wgan_generator_loss(d_fake: Tensor) -> Tensor:
    """Generator minimises −E[D(fake)]."""
    return -d_fake.mean()


def wasserstein_estimate(d_real: Tensor, d_fake: Tensor) -> Tensor:
    """E[D(real)] − E[D(fake)] as a detached float tensor, for logging."""
    return (d_real.detach().float().mean() - d_fake.detach().float().mean()).float()


def gan_critic_loss(d_real: Tensor, d_fake: Tensor) -> Tensor:
    """Vanilla GAN discriminator loss on logits: BCE with real = 1, fake = 0."""
    real = F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real))
    fake = F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))
    return real + fake


def gan_generator_loss(d_fake: Tensor) -> Tensor:
    """Non-saturating generator loss: BCE of the fake logits against label 1."""
    return F.binary_cross_entropy_with_logits(d_fake, torch.ones_like(d_fake))


#: the wgan_clip rule's bound: the WGAN paper's c (Arjovsky et al. 2017)
WGAN_CLIP = 0.01


def clip_critic_weights(module: nn.Module, clip: float = WGAN_CLIP) -> None:
    """Clamp every parameter of ``module`` to [−clip, clip] in place (original WGAN Lipschitz constraint)."""
    if clip <= 0:
        raise ValueError(f"clip must be positive, got {clip}")
    with torch.no_grad():
        for param in module.parameters():
            param.clamp_(-clip, clip)


def critic_accuracy(d_real: Tensor, d_fake: Tensor) -> Tensor:
    """Share of examples the GAN critic gets right: real logits > 0 and fake logits < 0 (detached)."""
    correct = torch.cat([(d_real.detach() > 0), (d_fake.detach() < 0)]).float()
    return correct.mean()


class AdversarialLoss(NamedTuple):
    """One adversarial objective, as the training loop needs it."""

    name: str
    critic_loss: Callable[[Tensor, Tensor], Tensor]
    generator_loss: Callable[[Tensor], Tensor]
    uses_gradient_penalty: bool
    clips_weights: bool


ADVERSARIAL_LOSSES: dict[str, AdversarialLoss] = {
    "wgan_gp": AdversarialLoss("wgan_gp", wgan_critic_loss, wgan_generator_loss, True, False),
    "gan": AdversarialLoss("gan", gan_critic_loss, gan_generator_loss, False, False),
    "wgan_clip": AdversarialLoss("wgan_clip", wgan_critic_loss, wgan_generator_loss, False, True),
}


def get_adversarial_loss(name: str) -> AdversarialLoss:
    """Look up ``adversarial.loss`` by name; unknown names fail with the list of choices."""
    try:
        return ADVERSARIAL_LOSSES[name]
    except KeyError:
        choices = ", ".join(sorted(ADVERSARIAL_LOSSES))
        raise ValueError(f"unknown adversarial loss {name!r}; choose one of: {choices}") from None
