"""The critics' word-match term: best cosine per response word, the gate, finite double gradients, and
a critic that must read the context to tell a reply in its own dialogue from one in another."""

from __future__ import annotations

import torch

from empdg.models.critic_inputs import mismatch_permutation
from empdg.models.critics import CriticConfig, ResponseCritic, best_match
from empdg.training.adversarial_losses import get_adversarial_loss, gradient_penalty


def test_best_match_is_the_best_cosine_with_a_real_word_and_zero_without_words():
    response = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [5.0, 5.0]]])
    response_mask = torch.tensor([[True, True, True, False]])
    words = torch.tensor([[[3.0, 0.0], [0.0, -1.0], [0.0, 7.0]]])
    words_mask = torch.tensor([[True, True, False]])  # the third word (which [0, 2] would match) is padding
    best = best_match(response, response_mask, words, words_mask, kappa=1e-6)
    torch.testing.assert_close(best, torch.tensor([[1.0, 0.0, 2**-0.5, 0.0]]), atol=1e-5, rtol=0)
    none = best_match(response, response_mask, words, torch.zeros(1, 3, dtype=torch.bool))
    assert torch.equal(none, torch.zeros(1, 4))
    # κ = 1 softens short vectors only: word vectors (norms ~17) keep their cosine to 0.2%
    long = best_match(response * 17, response_mask, words * 17, words_mask, kappa=1.0)
    torch.testing.assert_close(long, torch.tensor([[1.0, 0.0, 2**-0.5, 0.0]]), atol=3e-3, rtol=0)


def _critic(word_match: bool, dim: int = 16, seed: int = 0) -> ResponseCritic:
    torch.manual_seed(seed)
    cfg = CriticConfig(
        input_dim=dim, hidden_dim=16, context_dim=4, kernel_sizes=(2,), num_filters=8, word_match=word_match
    )
    return ResponseCritic(cfg)


def test_gradient_penalty_through_word_match_is_finite_with_zero_vectors():
    """Padded and non-emotion positions are zero vectors; F.normalize's gradient is NaN there."""
    critic = _critic(word_match=True, dim=4)
    real, fake = torch.randn(3, 5, 4), torch.randn(3, 5, 4)
    real[:, 2:] = 0.0
    fake[:, 3:] = 0.0
    mask = torch.ones(3, 5, dtype=torch.bool)
    words = torch.randn(3, 6, 4)
    words[:, 4:] = 0.0
    kwargs = {
        "context": torch.randn(3, 4),
        "feedback": torch.zeros(3, 2, 4),
        "feedback_mask": torch.ones(3, 2, dtype=torch.bool),
        "context_words": words,
        "context_words_mask": torch.ones(3, 6, dtype=torch.bool),
    }
    penalty, _ = gradient_penalty(lambda x: critic(x, mask, **kwargs), real, fake)
    penalty.backward()
    assert torch.isfinite(penalty)
    for name, param in critic.named_parameters():  # biases do not move an input gradient: no grad
        assert param.grad is None or torch.isfinite(param.grad).all(), name
    assert critic.match_gate.weight.grad.abs().sum() > 0 and critic.match_proj.weight.grad.abs().sum() > 0


def test_without_context_words_the_context_features_are_zero():
    critic = _critic(word_match=True, dim=4)
    response, mask = torch.randn(2, 3, 4), torch.ones(2, 3, dtype=torch.bool)
    feedback, feedback_mask = torch.randn(2, 2, 4), torch.ones(2, 2, dtype=torch.bool)
    context = torch.randn(2, 4)
    absent = critic(response, mask, context, feedback, feedback_mask)
    no_words = critic(
        response, mask, context, feedback, feedback_mask, torch.randn(2, 5, 4), torch.zeros(2, 5, dtype=torch.bool)
    )
    torch.testing.assert_close(absent, no_words)


VOCAB, DIM, CONTEXT_LEN, REPLY_LEN, BATCH = 200, 16, 8, 4, 32


def _dialogues(g: torch.Generator, table: torch.Tensor) -> dict[str, torch.Tensor]:
    """Replies that reuse two of their context's words (as listeners echo the speaker); feedback is noise."""
    context_ids = torch.randint(0, VOCAB, (BATCH, CONTEXT_LEN), generator=g)
    echoed = context_ids[:, :2]
    reply_ids = torch.cat([echoed, torch.randint(0, VOCAB, (BATCH, REPLY_LEN - 2), generator=g)], dim=1)
    return {
        "reply": table[reply_ids],
        "mask": torch.ones(BATCH, REPLY_LEN, dtype=torch.bool),
        "context": torch.zeros(BATCH, 4),  # the summary says nothing: only the words can
        "feedback": table[torch.randint(0, VOCAB, (BATCH, 3), generator=g)],
        "feedback_mask": torch.ones(BATCH, 3, dtype=torch.bool),
        "context_words": table[context_ids],
        "context_words_mask": torch.ones(BATCH, CONTEXT_LEN, dtype=torch.bool),
    }


def _gold_beats_mismatch_after_training(word_match: bool, steps: int = 60) -> float:
    g = torch.Generator().manual_seed(0)
    table = torch.randn(VOCAB, DIM, generator=g)
    critic = _critic(word_match, DIM)
    rule = get_adversarial_loss("wgan_gp")
    optimiser = torch.optim.Adam(critic.parameters(), lr=1e-3, betas=(0.5, 0.9))

    def score(b: dict, rows: torch.Tensor | None = None) -> torch.Tensor:
        cond = {k: b[k] for k in ("context", "feedback", "feedback_mask", "context_words", "context_words_mask")}
        if rows is not None:
            cond = {k: v[rows] for k, v in cond.items()}
        return critic(b["reply"], b["mask"], **cond)

    for _ in range(steps):
        b = _dialogues(g, table)
        loss = rule.critic_loss(score(b), score(b, mismatch_permutation(BATCH, g)))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        b = _dialogues(g, table)
        return float((score(b) > score(b, mismatch_permutation(BATCH, g))).float().mean())


def test_word_match_lets_a_critic_tell_its_own_dialogue_from_another():
    """The summary vector is uninformative here; only matching the reply's words to the context's
    words separates gold from mismatched gold. Measured: word_match 1.0, the plain critic ~0.5."""
    assert _gold_beats_mismatch_after_training(word_match=True) >= 0.9
    assert _gold_beats_mismatch_after_training(word_match=False) <= 0.75


def test_input_gradient_stays_bounded_when_a_row_has_one_tiny_word():
    # measured before the fix: 8,437 (a row's feature was its one tiny word's exact cosine)
    """The gradient penalty interpolates towards zero vectors (padding, D_emo's non-emotion words): a
    row whose only present word has a tiny norm must not get a gradient that grows as 1/|x|."""
    critic = _critic(word_match=True, dim=8)
    response = torch.zeros(4, 3, 8)
    response[:, 1] = torch.randn(4, 8) * torch.tensor([1e-3, 1e-2, 1e-1, 1.0]).unsqueeze(1)
    response.requires_grad_(True)
    mask = torch.ones(4, 3, dtype=torch.bool)
    words, words_mask = torch.randn(4, 5, 8), torch.ones(4, 5, dtype=torch.bool)
    score = critic(response, mask, torch.zeros(4, 4), torch.randn(4, 2, 8), words_mask[:, :2], words, words_mask)
    (grad,) = torch.autograd.grad(score.sum(), response)
    assert grad.norm(dim=(1, 2)).max() < 50.0
