"""gradient_penalty: exact value for linear critics, finite differences, second-order graph, LSTM critic."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from empdg.models.critics import CriticConfig, ResponseCritic
from empdg.training.adversarial_losses import gradient_penalty


def test_gradient_penalty_linear_critic_matches_hand_computed_value():
    torch.manual_seed(0)
    batch, length, dim = 4, 5, 3
    w = torch.randn(length, dim, dtype=torch.float64)
    critic = lambda x: (x * w).sum(dim=(1, 2)) + 0.7
    real = torch.randn(batch, length, dim, dtype=torch.float64)
    fake = torch.randn(batch, length, dim, dtype=torch.float64)
    expected = (w.norm() - 1) ** 2
    for alpha in (None, torch.zeros(batch), torch.ones(batch), torch.tensor([0.1, 0.5, 0.9, 0.3])):
        penalty, norms = gradient_penalty(critic, real, fake, alpha=alpha)
        torch.testing.assert_close(norms, w.norm().expand(batch))
        torch.testing.assert_close(penalty, expected)


class _TanhCritic(nn.Module):
    def __init__(self, dim: int, hidden: int = 7) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.mlp(x)).sum(dim=(1, 2))


def test_gradient_penalty_norms_match_finite_differences():
    torch.manual_seed(1)
    batch, length, dim = 3, 4, 2
    critic = _TanhCritic(dim).double()
    real = torch.randn(batch, length, dim, dtype=torch.float64)
    fake = torch.randn(batch, length, dim, dtype=torch.float64)
    alpha = torch.tensor([0.2, 0.6, 0.9], dtype=torch.float64)
    penalty, norms = gradient_penalty(critic, real, fake, alpha=alpha)

    mixed = alpha.view(-1, 1, 1) * real + (1 - alpha.view(-1, 1, 1)) * fake
    eps = 1e-6
    fd = torch.zeros_like(mixed)
    with torch.no_grad():
        for idx in range(mixed[0].numel()):
            step = torch.zeros(mixed[0].numel(), dtype=torch.float64)
            step[idx] = eps
            step = step.view(length, dim)
            fd.view(batch, -1)[:, idx] = (critic(mixed + step) - critic(mixed - step)) / (2 * eps)
    fd_norms = fd.reshape(batch, -1).norm(dim=1)
    torch.testing.assert_close(norms.detach(), fd_norms, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(penalty.detach(), ((fd_norms - 1) ** 2).mean(), rtol=1e-6, atol=1e-8)


def test_gradient_penalty_reaches_critic_parameters():
    torch.manual_seed(2)
    critic = _TanhCritic(3)
    real, fake = torch.randn(5, 4, 3), torch.randn(5, 4, 3)
    penalty, _ = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(0))
    penalty.backward()
    for name, param in critic.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_gradient_penalty_is_seeded_by_generator():
    critic = _TanhCritic(3)
    real, fake = torch.randn(5, 4, 3), torch.randn(5, 4, 3)
    a, _ = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(3))
    b, _ = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b)


def test_gradient_penalty_zero_gradient_example_stays_finite():
    # A critic that is flat around one example (dead ReLU) gives norm 0 there; the penalty's backward
    # must not turn that into NaN.
    w = nn.Parameter(torch.randn(3))
    gate = torch.tensor([0.0, 1.0, 1.0])
    critic = lambda x: (x * w).sum(dim=(1, 2)) * gate
    penalty, norms = gradient_penalty(critic, torch.randn(3, 2, 3), torch.randn(3, 2, 3))
    assert norms[0] == 0
    penalty.backward()
    assert torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0


def test_gradient_penalty_rejects_unaligned_inputs():
    with pytest.raises(ValueError, match="aligned"):
        gradient_penalty(lambda x: x.sum(dim=(1, 2)), torch.zeros(2, 3, 4), torch.zeros(2, 5, 4))


@pytest.mark.parametrize("use_feedback", [True, False])
def test_gradient_penalty_through_response_critic_double_backward(use_feedback: bool):
    torch.manual_seed(4)
    batch, length, dim, ctx = 3, 5, 6, 4
    critic = ResponseCritic(
        CriticConfig(input_dim=dim, hidden_dim=8, context_dim=ctx, num_filters=3, use_feedback=use_feedback)
    )
    mask = torch.arange(length)[None] < torch.tensor([5, 2, 1])[:, None]
    context = torch.randn(batch, ctx)
    feedback = torch.randn(batch, 4, dim)
    fb_mask = torch.arange(4)[None] < torch.tensor([4, 1, 3])[:, None]
    critic_fn = lambda x: critic(x, mask, context, feedback, fb_mask)
    real, fake = torch.randn(batch, length, dim), torch.randn(batch, length, dim)

    penalty, norms = gradient_penalty(critic_fn, real, fake, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(penalty) and norms.shape == (batch,) and norms.sum() > 0
    penalty.backward()
    # ∇_x D depends on every weight on the response path (second-order LSTM terms included); biases after
    # the LSTM, the context and the feedback only move ReLU gates, so their penalty gradient is 0.
    response_path = [n for n, _ in critic.named_parameters() if n.startswith("response_lstm")]
    response_path += ["convs.0.weight", "convs.2.weight", "response_proj.weight", "out.weight"]
    params = dict(critic.named_parameters())
    for name in response_path:
        assert params[name].grad is not None and params[name].grad.abs().sum() > 0, name

    # Gradient at padded positions is exactly zero because the critic masks them.
    x = (0.5 * real + 0.5 * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic_fn(x).sum(), x)
    assert grad[~mask].abs().max() == 0
    assert grad[mask].abs().sum() > 0
