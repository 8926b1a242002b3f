"""How the generator's adversarial gradient is estimated: one :class:`Estimator` subclass per
``adversarial.estimator``, registered by name.

An estimator says what the generated reply the critics learn to reject looks like (its fake view),
whether the critics' side needs the teacher-forced output for it, whether the generator's greedy reply
is one more fake, whether responses are rescaled to unit length, and the generator's adversarial term:

- ``reinforce``: free-running replies are *sampled*; the critics score hard token sequences for both
  real and fake (one input form, no content-free cue), and the generator follows the score-function
  gradient (r - b) · ∇ log p(reply) with a self-critical baseline b, the critics' score of the greedy
  reply (Rennie et al. 2017; as dialogue GANs do: SeqGAN, Li et al. 2017).
- ``gumbel``: free-running straight-through Gumbel-softmax; the forward pass is one-hot (hard
  tokens), the backward the soft sample's gradient.
- ``soft``: expected embeddings softmax(logits/τ)·E under teacher forcing. Their norms are smaller
  than any word vector's, which a critic would learn to read instead of content, so every position of
  every response is rescaled to unit length.

The relaxed responses (soft, gumbel) are differentiable functions of the generator's output
distribution: generated text is discrete, so a critic score of sampled tokens carries no gradient to
the generator (the original EmpDG code's flaw: its adversarial term was a detached number). The
emotional critic weights each relaxed position by the probability mass the generator puts on
emotion-lexicon tokens; gold text uses its 0/1 emotion-word mask, of which this is the expectation.

The registry lives here, below the config, so ``adversarial.estimator`` is checked against it while
the config is composed and the inference bundle knows whether a run unit-normed its critics' inputs;
the training-only part, :meth:`Estimator.generator_term`, gets the adversarial game as an argument.
A new estimator is one class (tests/models/test_adding_an_estimator.py proves it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from empdg.data.vocab import EOS_ID
from empdg.models.base import EncodedDialogue, Generator, GeneratorOutput
from empdg.models.critic_inputs import CriticCondition, ResponseView
from empdg.models.decoding import sequence_log_prob
from empdg.models.rule_registry import RuleRegistry


@dataclass
class GeneratorAdversarialTerm:
    loss: Tensor  # differentiable w.r.t. the generator
    logs: dict[str, Tensor]


class Estimator:
    """One ``adversarial.estimator``. ``game`` below is the :class:`~empdg.training.adversarial.AdversarialGame`
    (its ``generator``, ``panel``, ``settings``, ``rule``, ``decode`` and ``reward``)."""

    name: ClassVar[str]
    teacher_forced: ClassVar[bool] = False  # the fake view reads the teacher-forced output (no decoding)
    greedy_negatives: ClassVar[bool] = True  # the greedy reply is one more fake for the critics
    unit_norm: ClassVar[bool] = False  # every response position is rescaled to unit length

    def fake_view(self, game: Any, batch: dict, out: GeneratorOutput) -> ResponseView:
        """The generated response the critics learn to reject, as they read it."""
        raise NotImplementedError

    def generator_term(
        self, game: Any, batch: dict, out: GeneratorOutput, rows: Tensor, conditions: dict[str, CriticCondition]
    ) -> GeneratorAdversarialTerm:
        """The adversarial part of the generator loss (differentiable). By default the critics' generator
        loss of the fake view, which must carry gradient (a relaxation)."""
        fake = self.fake_view(game, batch, out).rows(rows)
        loss = torch.zeros((), device=out.encoded.x0.device)
        for name in game.panel:
            loss = loss + game.rule.generator_loss(game.panel.score(name, fake, conditions[name]))
        return GeneratorAdversarialTerm(loss, {})


_ESTIMATORS = RuleRegistry(Estimator, "estimator")
register_estimator = _ESTIMATORS.register  # class decorator: ``cls.name`` becomes a choice of adversarial.estimator
estimator_names = _ESTIMATORS.names
get_estimator = _ESTIMATORS.get  # a fresh instance; an unknown name fails with the list of choices


@register_estimator
class Reinforce(Estimator):
    name = "reinforce"

    def fake_view(self, game: Any, batch: dict, out: GeneratorOutput) -> ResponseView:
        return game.panel.ids_view(game.decode(out.encoded, "sample"))

    def generator_term(
        self, game: Any, batch: dict, out: GeneratorOutput, rows: Tensor, conditions: dict[str, CriticCondition]
    ) -> GeneratorAdversarialTerm:
        """Self-critical REINFORCE: (reward(sample) - reward(greedy)) · log p(sample)."""
        encoded = out.encoded
        with torch.no_grad():
            sampled = game.decode(encoded, "sample")
            greedy = game.decode(encoded, "greedy")
            reward = game.reward(game.panel.ids_view(sampled).rows(rows), conditions)
            baseline = game.reward(game.panel.ids_view(greedy).rows(rows), conditions)
            advantage = reward - baseline
        log_prob = sequence_log_prob(game.generator, encoded, sampled)[rows]
        loss = -(advantage * log_prob).mean()
        logs = {
            "wgan/reinforce_reward": reward.mean(),
            "wgan/reinforce_advantage": advantage.mean(),
            "wgan/reinforce_advantage_abs": advantage.abs().mean(),
        }
        return GeneratorAdversarialTerm(loss, logs)


@register_estimator
class Gumbel(Estimator):
    name = "gumbel"

    def fake_view(self, game: Any, batch: dict, out: GeneratorOutput) -> ResponseView:
        panel, s = game.panel, game.settings
        return gumbel_response(
            game.generator, out.encoded, panel.emotion_vocab, s.tau, s.max_gen_len, panel.match_vocab
        )


@register_estimator
class Soft(Estimator):
    name = "soft"
    teacher_forced = True
    greedy_negatives = False
    unit_norm = True

    def fake_view(self, game: Any, batch: dict, out: GeneratorOutput) -> ResponseView:
        panel = game.panel
        pad = batch["target_pad_mask"]
        return soft_response(
            game.generator, out.log_probs, pad, panel.emotion_vocab, game.settings.tau, panel.match_vocab
        )


# -- the relaxed responses -----------------------------------------------------------------------
def soft_response(
    generator: Generator,
    log_probs: Tensor,
    target_pad_mask: Tensor,
    emotion_vocab: Tensor,
    tau: float,
    match_vocab: Tensor | None = None,
) -> ResponseView:
    """Expected embeddings under teacher forcing; aligned with the gold response position by position.
    Per-token weights (emotion, word match) are their expectations under the same distribution."""
    vocab_size = generator.sizes.vocab_size
    probs = torch.softmax(log_probs[..., :vocab_size] / tau, dim=-1)
    vectors = probs @ generator.word_embedding.weight
    match = None if match_vocab is None else probs.detach() @ match_vocab
    return ResponseView(vectors, ~target_pad_mask, probs @ emotion_vocab, match)


def gumbel_noise(uniform: Tensor) -> Tensor:
    """Standard Gumbel noise −log(−log u) from uniform draws ``u`` in [0, 1), finite everywhere.

    ``u`` = 0 (one draw in 2²⁴ of ``torch.rand``'s float32) would give −∞; it is raised to the smallest
    normal number, which gives −4.5, so no token is ever ruled out by its noise alone.
    """
    return -torch.log(-torch.log(uniform.clamp_min(torch.finfo(uniform.dtype).tiny)))


def straight_through_gumbel(logits: Tensor, tau: float, noise: Tensor | None = None) -> Tensor:
    """[B, V] one-hot samples of softmax(``logits``) whose gradient is the relaxed sample's (hard=True).

    The forward value is one_hot(argmax(logits + g)) (the Gumbel-max trick: an exact draw from the
    categorical), the backward that of softmax((logits + g) / τ). What ``F.gumbel_softmax(hard=True)``
    computes, but its noise comes from ``Tensor.exponential_``, which on a CPU takes 5-6 times as long
    as uniform draws and two logarithms: at 30 decoding steps over a 6,474-word vocabulary it was an
    eighth of every adversarial update (docs/critics.md). ``noise`` [B, V] replaces the draw (tests).
    The noise is drawn in float32 at least (bf16 uniforms have 8 bits).
    """
    work = torch.promote_types(logits.dtype, torch.float32)
    if noise is None:
        noise = gumbel_noise(torch.rand(logits.shape, device=logits.device, dtype=work))
    soft = ((logits.to(work) + noise) / tau).softmax(dim=-1)
    hard = torch.zeros_like(soft).scatter_(-1, soft.argmax(dim=-1, keepdim=True), 1.0)
    return (hard - soft.detach() + soft).to(logits.dtype)


def gumbel_response(
    generator: Generator,
    encoded: EncodedDialogue,
    emotion_vocab: Tensor,
    tau: float,
    max_len: int,
    match_vocab: Tensor | None = None,
) -> ResponseView:
    """Free-running straight-through Gumbel-softmax decoding with the generator's cache."""
    vocab_size = generator.sizes.vocab_size
    cache = generator.new_cache(encoded)
    previous = None  # the word vectors of the last sample: differentiable, fed back as the next input
    finished = torch.zeros(encoded.batch_size, dtype=torch.bool, device=encoded.device)
    vectors, masks, weights, matches = [], [], [], []
    for _ in range(max_len):
        log_probs = generator.decode_step(encoded, cache, previous)
        sample = straight_through_gumbel(log_probs[:, :vocab_size], tau)  # [B, V]
        masks.append(~finished)
        previous = sample @ generator.word_embedding.weight
        vectors.append(previous)
        weights.append(sample @ emotion_vocab)
        if match_vocab is not None:
            matches.append(sample.detach() @ match_vocab)
        finished = finished | sample[:, EOS_ID].detach().bool()
        if bool(finished.all()):
            break
    match = torch.stack(matches, 1) if matches else None
    return ResponseView(torch.stack(vectors, 1), torch.stack(masks, 1), torch.stack(weights, 1), match)
