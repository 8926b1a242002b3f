"""The gumbel estimator's token draw: one-hot forward, the relaxed sample's gradient, an exact categorical draw."""

from __future__ import annotations

import math

import torch

from empdg.models.estimators import gumbel_noise, straight_through_gumbel


def test_forward_is_the_one_hot_argmax_of_logits_plus_noise() -> None:
    logits = torch.tensor([[0.0, math.log(2.0), -1.0], [2.0, 0.0, 0.0]])
    noise = torch.tensor([[0.5, 0.0, 0.0], [0.0, 2.5, 0.0]])  # row 1: 0.5 < ln 2 + 0; row 2: 2 < 2.5
    sample = straight_through_gumbel(logits, tau=1.0, noise=noise)
    assert torch.equal(sample.argmax(dim=-1), torch.tensor([1, 1]))
    assert torch.allclose(sample, torch.tensor([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]), atol=1e-7)


def test_gradient_is_the_relaxed_samples_at_temperature_tau() -> None:
    # y = softmax((l + g) / τ) at l + g = [0.5, ln 2] and τ = 0.5: y ∝ [e, 4] = [0.4046, 0.5954];
    # d(y_1)/d(l_j) = y_1 (δ_1j − y_j) / τ = [−0.4818, 0.4818]
    logits = torch.tensor([[0.0, math.log(2.0)]], requires_grad=True)
    sample = straight_through_gumbel(logits, tau=0.5, noise=torch.tensor([[0.5, 0.0]]))
    sample[0, 1].backward()
    y1 = 4 / (math.e + 4)
    assert abs(y1 - 0.5954) < 1e-4
    expected = torch.tensor([[-y1 * (1 - y1) / 0.5, y1 * (1 - y1) / 0.5]])
    assert torch.allclose(logits.grad, expected, atol=1e-6)
    assert abs(logits.grad[0, 1].item() - 0.4818) < 1e-4


def test_draws_follow_the_softmax_of_the_logits() -> None:
    # the Gumbel-max trick: argmax(l + g) ~ softmax(l); 20,000 rows, each share's sd is at most 0.0035
    torch.manual_seed(0)
    probs = torch.tensor([0.2, 0.3, 0.5])
    logits = probs.log().expand(20_000, 3)
    shares = straight_through_gumbel(logits, tau=1.0).detach().mean(dim=0)
    assert torch.allclose(shares, probs, atol=0.015)
    assert torch.allclose(shares.sum(), torch.tensor(1.0))


def test_gradient_is_the_relaxed_samples_for_any_upstream_gradient() -> None:
    torch.manual_seed(1)
    logits = torch.randn(4, 7, requires_grad=True)
    noise, weights = gumbel_noise(torch.rand(4, 7)), torch.randn(4, 7)
    (straight_through_gumbel(logits, tau=0.7, noise=noise) * weights).sum().backward()
    ours, logits.grad = logits.grad.clone(), None
    (torch.softmax((logits + noise) / 0.7, dim=-1) * weights).sum().backward()
    assert torch.allclose(ours, logits.grad, atol=1e-6)


def test_low_precision_logits_keep_their_dtype_and_exact_one_hot_rows() -> None:
    torch.manual_seed(2)
    logits = torch.zeros(1000, 2, dtype=torch.bfloat16)
    sample = straight_through_gumbel(logits, tau=1.0)
    assert sample.dtype == torch.bfloat16 and torch.equal(sample.sum(dim=-1), torch.ones(1000, dtype=torch.bfloat16))
    # still a fair coin (1,000 draws: sd 0.016)
    assert abs(sample[:, 1].float().mean().item() - 0.5) < 0.05


def test_noise_is_finite_at_the_ends_of_the_uniform_range() -> None:
    u = torch.tensor([0.0, 0.5, 1.0 - 2.0**-24])
    noise = gumbel_noise(u)
    assert torch.isfinite(noise).all()
    assert abs(noise[0].item() - (-math.log(-math.log(torch.finfo(torch.float32).tiny)))) < 1e-4
    assert abs(noise[1].item() - (-math.log(math.log(2.0)))) < 1e-6  # 0.3665
    assert noise[0] < noise[1] < noise[2]
