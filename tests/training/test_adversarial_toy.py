"""Critics learn a separable toy problem under each loss; registry and weight clipping."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from empdg.models.critics import CriticConfig, ResponseCritic
from empdg.training.adversarial_losses import (
    ADVERSARIAL_LOSSES,
    clip_critic_weights,
    critic_accuracy,
    gan_critic_loss,
    gan_generator_loss,
    get_adversarial_loss,
    gradient_penalty,
    wasserstein_estimate,
    wgan_critic_loss,
    wgan_generator_loss,
)

BATCH, LENGTH, DIM, CTX, FB_LENGTH = 16, 5, 4, 3, 3


def _batch(g: torch.Generator) -> dict[str, torch.Tensor]:
    """Real responses sit around +0.7, fakes around -0.7; masks, context and feedback are shared."""
    lengths = torch.randint(1, LENGTH + 1, (BATCH,), generator=g)
    return {
        "real": torch.randn(BATCH, LENGTH, DIM, generator=g) * 0.5 + 0.7,
        "fake": torch.randn(BATCH, LENGTH, DIM, generator=g) * 0.5 - 0.7,
        "mask": torch.arange(LENGTH)[None] < lengths[:, None],
        "context": torch.randn(BATCH, CTX, generator=g),
        "feedback": torch.randn(BATCH, FB_LENGTH, DIM, generator=g),
        "feedback_mask": torch.ones(BATCH, FB_LENGTH, dtype=torch.bool),
    }


def _train_critic(loss_name: str, steps: int = 100, seed: int = 0) -> tuple[list[float], list[float]]:
    """Train a small critic against a fixed fake distribution; return per-step W estimate and accuracy."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    loss = get_adversarial_loss(loss_name)
    cfg = CriticConfig(input_dim=DIM, hidden_dim=16, context_dim=CTX, kernel_sizes=(2, 3), num_filters=8)
    critic = ResponseCritic(cfg)
    opt = torch.optim.Adam(critic.parameters(), lr=1e-3, betas=(0.5, 0.9))
    estimates, accuracies = [], []
    for _ in range(steps):
        b = _batch(g)
        score = lambda x, b=b: critic(x, b["mask"], b["context"], b["feedback"], b["feedback_mask"])
        d_real, d_fake = score(b["real"]), score(b["fake"])
        total = loss.critic_loss(d_real, d_fake)
        if loss.uses_gradient_penalty:
            penalty, _ = gradient_penalty(score, b["real"], b["fake"], generator=g)
            total = total + 10.0 * penalty
        opt.zero_grad()
        total.backward()
        opt.step()
        if loss.clips_weights:
            clip_critic_weights(critic, 0.01)
        estimates.append(float(wasserstein_estimate(d_real, d_fake)))
        accuracies.append(float(critic_accuracy(d_real, d_fake)))
    return estimates, accuracies


def test_wgan_gp_critic_learns_toy_separation():
    estimates, _ = _train_critic("wgan_gp")
    assert all(torch.isfinite(torch.tensor(estimates)))
    start = sum(estimates[:5]) / 5
    end = sum(estimates[-10:]) / 10
    assert end > start + 1.0, (start, end)
    # The gradient penalty keeps the critic roughly 1-Lipschitz, so the estimate stays bounded.
    assert max(estimates) < 50


def test_gan_critic_reaches_high_accuracy_on_toy_separation():
    _, accuracies = _train_critic("gan")
    assert sum(accuracies[-10:]) / 10 > 0.9, accuracies[-10:]


def test_wgan_losses_have_expected_signs():
    d_real, d_fake = torch.tensor([2.0, 4.0]), torch.tensor([-1.0, 1.0])
    assert wgan_critic_loss(d_real, d_fake) == pytest.approx(-3.0)
    assert wgan_generator_loss(d_fake) == pytest.approx(0.0)
    estimate = wasserstein_estimate(d_real.requires_grad_(True), d_fake)
    assert estimate.item() == pytest.approx(3.0) and not estimate.requires_grad
    assert estimate.dtype == torch.float32


def test_gan_losses_and_critic_accuracy():
    big = torch.tensor([20.0, 30.0])
    assert gan_critic_loss(big, -big) < 1e-6
    assert gan_critic_loss(-big, big) > 10
    assert gan_generator_loss(big) < 1e-6
    # Non-saturating: a confident critic still gives the generator a strong gradient.
    fake = (-big).requires_grad_(True)
    gan_generator_loss(fake).backward()
    assert fake.grad.abs().min() > 0.4
    accuracy = critic_accuracy(torch.tensor([1.0, -1.0]), torch.tensor([-1.0, -2.0]))
    assert accuracy.item() == pytest.approx(0.75)


def test_adversarial_loss_registry():
    assert set(ADVERSARIAL_LOSSES) == {"wgan_gp", "gan", "wgan_clip"}
    assert get_adversarial_loss("wgan_gp").uses_gradient_penalty
    assert not get_adversarial_loss("wgan_gp").clips_weights
    assert get_adversarial_loss("wgan_clip").clips_weights
    assert not get_adversarial_loss("wgan_clip").uses_gradient_penalty
    gan = get_adversarial_loss("gan")
    assert gan.critic_loss is gan_critic_loss and gan.generator_loss is gan_generator_loss
    assert not gan.uses_gradient_penalty and not gan.clips_weights
    with pytest.raises(ValueError, match="gan, wgan_clip, wgan_gp"):
        get_adversarial_loss("lsgan")


def test_clip_critic_weights_clamps_in_place():
    cfg = CriticConfig(input_dim=DIM, hidden_dim=8, context_dim=CTX, num_filters=4)
    critic = ResponseCritic(cfg)
    with torch.no_grad():
        for p in critic.parameters():
            p.mul_(100)
    ids = [id(p) for p in critic.parameters()]
    clip_critic_weights(critic, 0.05)
    assert [id(p) for p in critic.parameters()] == ids
    assert all(p.abs().max() <= 0.05 for p in critic.parameters())
    assert any((p.abs() == 0.05).any() for p in critic.parameters())
    assert all(p.requires_grad and p.grad is None for p in critic.parameters())
    with pytest.raises(ValueError):
        clip_critic_weights(nn.Linear(2, 2), 0.0)
