"""ResponseCritic: shapes, parameters that persist and train, feedback switch, masking."""

from __future__ import annotations

import pytest
import torch

from empdg.models.critics import CriticConfig, ResponseCritic

B, T, TF, D, H, C = 3, 6, 5, 8, 12, 10


def _critic(use_feedback: bool = True, seed: int = 0) -> ResponseCritic:
    torch.manual_seed(seed)
    cfg = CriticConfig(input_dim=D, hidden_dim=H, context_dim=C, num_filters=4, use_feedback=use_feedback)
    return ResponseCritic(cfg)


def _inputs(seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([6, 3, 1])
    fb_lengths = torch.tensor([5, 2, 4])
    return {
        "response": torch.randn(B, T, D, generator=g),
        "response_mask": torch.arange(T)[None] < lengths[:, None],
        "context": torch.randn(B, C, generator=g),
        "feedback": torch.randn(B, TF, D, generator=g),
        "feedback_mask": torch.arange(TF)[None] < fb_lengths[:, None],
    }


def test_critic_output_shape_is_one_score_per_example():
    scores = _critic()(**_inputs())
    assert scores.shape == (B,)
    assert torch.isfinite(scores).all()


def test_critic_keeps_its_parameters_between_calls():
    critic = _critic()
    ids_before = {id(p) for p in critic.parameters()}
    state_before = {k: v.clone() for k, v in critic.state_dict().items()}
    first = critic(**_inputs())
    second = critic(**_inputs())
    assert {id(p) for p in critic.parameters()} == ids_before
    state_after = critic.state_dict()
    assert state_after.keys() == state_before.keys()
    for key, value in state_before.items():
        assert torch.equal(state_after[key], value), key
    torch.testing.assert_close(first, second)


def test_critic_every_parameter_gets_a_gradient():
    critic = _critic()
    critic(**_inputs()).sum().backward()
    for name, param in critic.named_parameters():
        assert param.grad is not None, name
        assert param.grad.abs().sum() > 0, name


def test_critic_without_feedback_has_no_feedback_lstm_and_ignores_feedback():
    critic = _critic(use_feedback=False)
    assert critic.feedback_lstm is None
    assert not any("feedback" in name for name, _ in critic.named_parameters())
    inputs = _inputs()
    base = critic(inputs["response"], inputs["response_mask"], inputs["context"])
    other = critic(**{**inputs, "feedback": torch.randn(B, TF, D) * 5})
    torch.testing.assert_close(base, other, rtol=0, atol=0)
    torch.testing.assert_close(base, critic(**inputs), rtol=0, atol=0)


def test_critic_with_feedback_depends_on_feedback():
    critic = _critic()
    inputs = _inputs()
    base = critic(**inputs)
    changed = critic(**{**inputs, "feedback": inputs["feedback"] + 1.0})
    assert (base - changed).abs().min() > 1e-6


def test_critic_with_feedback_requires_it():
    inputs = _inputs()
    with pytest.raises(ValueError, match="use_feedback"):
        _critic()(inputs["response"], inputs["response_mask"], inputs["context"])


def test_critic_is_invariant_to_padded_response_positions():
    critic = _critic()
    inputs = _inputs()
    base = critic(**inputs)
    noisy = inputs["response"].clone()
    pad = ~inputs["response_mask"]
    noisy[pad] = torch.randn(int(pad.sum()), D) * 100
    torch.testing.assert_close(critic(**{**inputs, "response": noisy}), base)
    # Extra trailing padding (a longer batch) changes nothing either.
    longer = torch.cat([inputs["response"], torch.randn(B, 4, D)], dim=1)
    longer_mask = torch.cat([inputs["response_mask"], torch.zeros(B, 4, dtype=torch.bool)], dim=1)
    torch.testing.assert_close(critic(**{**inputs, "response": longer, "response_mask": longer_mask}), base)


def test_critic_is_invariant_to_padded_feedback_positions():
    critic = _critic()
    inputs = _inputs()
    noisy = inputs["feedback"].clone()
    pad = ~inputs["feedback_mask"]
    noisy[pad] = torch.randn(int(pad.sum()), D) * 100
    base = critic(**inputs)
    torch.testing.assert_close(critic(**{**inputs, "feedback": noisy}), base)
    # d_F is the state at the last real feedback token, not at the end of the padded tensor.
    longer = torch.cat([inputs["feedback"], torch.randn(B, 3, D)], dim=1)
    longer_mask = torch.cat([inputs["feedback_mask"], torch.zeros(B, 3, dtype=torch.bool)], dim=1)
    torch.testing.assert_close(critic(**{**inputs, "feedback": longer, "feedback_mask": longer_mask}), base)


def test_critic_handles_length_one_responses():
    critic = _critic()
    inputs = _inputs()
    short = {
        **inputs,
        "response": inputs["response"][:, :1],
        "response_mask": torch.ones(B, 1, dtype=torch.bool),
    }
    scores = critic(**short)
    assert scores.shape == (B,) and torch.isfinite(scores).all()
    # Equal to the same one-token responses inside a padded batch.
    padded_mask = torch.zeros(B, T, dtype=torch.bool)
    padded_mask[:, 0] = True
    torch.testing.assert_close(critic(**{**inputs, "response_mask": padded_mask}), scores)


def test_critic_all_padding_feedback_gives_no_nan():
    critic = _critic()
    inputs = _inputs()
    inputs["feedback_mask"][1] = False
    inputs["response"].requires_grad_(True)
    scores = critic(**inputs)
    assert torch.isfinite(scores).all()
    scores.sum().backward()
    assert torch.isfinite(inputs["response"].grad).all()
    for name, param in critic.named_parameters():
        assert torch.isfinite(param.grad).all(), name


def test_critic_empty_response_gives_no_nan():
    critic = _critic()
    inputs = _inputs()
    inputs["response_mask"][2] = False
    assert torch.isfinite(critic(**inputs)).all()


# -- precision: the critics run in float32 whatever the trainer's precision -------------------------------------
def _penalty_inputs(critic: ResponseCritic, inputs: dict[str, torch.Tensor]):
    fake = torch.randn(B, T, D, generator=torch.Generator().manual_seed(7))
    kwargs = {k: v for k, v in inputs.items() if k != "response"}
    return (lambda x: critic(x, **kwargs)), inputs["response"], fake, torch.tensor([0.2, 0.5, 0.9])


def test_critic_score_under_bf16_autocast_is_the_float32_score():
    critic, inputs = _critic(), _inputs()
    expected = critic(**inputs)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        # the inputs as a bf16 generator hands them over
        score = critic(**{k: v.bfloat16() if v.is_floating_point() else v for k, v in inputs.items()})
        unchanged = critic(**inputs)
    assert score.dtype == unchanged.dtype == torch.float32
    assert torch.equal(unchanged, expected)
    # bf16 inputs lose their low bits before the critic sees them, nothing more
    torch.testing.assert_close(score, critic(**{k: v.bfloat16().float() if v.is_floating_point() else v
                                               for k, v in inputs.items()}), rtol=0, atol=0)  # fmt: skip


def test_gradient_penalty_under_bf16_autocast_is_the_float32_penalty():
    from empdg.training.adversarial_losses import gradient_penalty

    critic_fn, real, fake, alpha = _penalty_inputs(_critic(), _inputs())
    expected, expected_norms = gradient_penalty(critic_fn, real, fake, alpha=alpha)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        penalty, norms = gradient_penalty(critic_fn, real, fake, alpha=alpha)
    assert penalty.dtype == norms.dtype == torch.float32
    assert torch.equal(penalty, expected) and torch.equal(norms, expected_norms)


AVX2_CRITIC_STEP = """
import torch
from empdg.models.critics import CriticConfig, ResponseCritic
from empdg.training.adversarial_losses import gradient_penalty, wgan_critic_loss

torch.manual_seed(0)
critic = ResponseCritic(CriticConfig(input_dim=8, hidden_dim=12, context_dim=10, num_filters=4))
real, fake = torch.randn(3, 6, 8), torch.randn(3, 6, 8)
mask, context = torch.ones(3, 6, dtype=torch.bool), torch.randn(3, 10)
feedback, feedback_mask = torch.randn(3, 5, 8), torch.ones(3, 5, dtype=torch.bool)
def score(x):
    return critic(x, mask, context, feedback, feedback_mask)
with torch.autocast("cpu", dtype=torch.bfloat16):
    loss = wgan_critic_loss(score(real), score(fake)) + 10 * gradient_penalty(score, real, fake)[0]
loss.backward()
print("critic step ok", loss.dtype)
"""


def test_critic_step_runs_under_bf16_autocast_on_a_cpu_without_avx512():
    """oneDNN has no bf16 LSTM below AVX-512; ONEDNN_MAX_CPU_ISA=AVX2 makes this CPU one of those."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", AVX2_CRITIC_STEP], env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "critic step ok torch.float32" in done.stdout
