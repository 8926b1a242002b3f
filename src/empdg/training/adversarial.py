"""The adversarial game of EmpDG: what the critics learn from and how their judgement reaches the generator.

Three estimators of the generator's adversarial gradient (``adversarial.estimator``):

- ``reinforce``: free-running replies are *sampled*; the critics score hard token sequences for both
  real and fake (one input form, no content-free cue), and the generator follows the
  score-function gradient (r - b) · ∇ log p(reply) with a self-critical baseline b, the critics'
  score of the greedy reply (Rennie et al. 2017; as dialogue GANs do: SeqGAN, Li et al. 2017).
- ``gumbel``: free-running straight-through Gumbel-softmax; the forward pass is one-hot (hard
  tokens), the backward the soft sample's gradient.
- ``soft``: expected embeddings softmax(logits/τ)·E under teacher forcing. Their norms are smaller
  than any word vector's, which a critic learns to read instead of content; use it with
  ``input_norm=unit`` (every position of every response rescaled to unit length).

Mismatched negatives (``mismatched_negatives``): a real reply paired with another dialogue's context
and feedback is one more fake, so a critic scores *fit*, not fluency alone (matching-aware
discriminators, Reed et al. 2016).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from empdg.config.schema import AdversarialConfig
from empdg.models.base import EncodedDialogue, Generator, GeneratorOutput
from empdg.models.critics import CriticConfig, ResponseCritic
from empdg.models.decoding import DecodingConfig, decode_encoded
from empdg.training.adversarial_losses import (
    critic_accuracy,
    get_adversarial_loss,
    gradient_penalty,
    wasserstein_estimate,
)
from empdg.training.critic_inputs import (
    CRITIC_SHORT,
    CriticCondition,
    ResponseView,
    aligned,
    critic_conditions,
    critic_match_weight,
    critic_response,
    feedback_rows,
    generated_mask,
    gold_view,
    mismatch_permutation,
    pad_time,
    token_view,
)
from empdg.training.instruments import gradient_probe
from empdg.training.relaxation import gumbel_response, soft_response


@dataclass
class GeneratorAdversarialTerm:
    loss: Tensor  # differentiable w.r.t. the generator
    logs: dict[str, Tensor]


class AdversarialGame:
    """The critics' and the generator's adversarial objectives; owns no parameters.

    ``emotion_vocab`` is a callable returning the [V] lexicon indicator (a buffer of the module, so
    it follows the module's device); ``match_vocab`` one returning the [V] word-match weights of
    ``word_match`` critics (None: no such critic).
    """

    def __init__(
        self,
        generator: Generator,
        critics: nn.ModuleDict,
        settings: AdversarialConfig,
        emotion_vocab,
        match_vocab=lambda: None,
    ):
        self.generator = generator
        self.critics = critics
        self.settings = settings
        self.rule = get_adversarial_loss(settings.loss)
        self._emotion_vocab = emotion_vocab
        self._match_vocab = match_vocab

    @property
    def emotion_vocab(self) -> Tensor:
        return self._emotion_vocab()

    @property
    def match_vocab(self) -> Tensor | None:
        return self._match_vocab()

    # -- responses ---------------------------------------------------------------------------
    def decode(self, encoded: EncodedDialogue, strategy: str, rng: torch.Generator | None = None) -> Tensor:
        """Free-running replies; sampling draws from ``rng`` (default: the global RNG, saved in checkpoints)."""
        cfg = DecodingConfig(
            strategy=strategy, max_len=self.settings.max_gen_len, temperature=self.settings.sample_temperature
        )
        return decode_encoded(self.generator, encoded, cfg, rng)

    def ids_view(self, ids: Tensor) -> ResponseView:
        return token_view(self.generator, ids, generated_mask(ids), self.emotion_vocab, self.match_vocab)

    def fake_view(self, batch: dict, out: GeneratorOutput) -> ResponseView:
        """The generated response the critics learn to reject, in the estimator's form."""
        s = self.settings
        if s.estimator == "soft":
            pad = batch["target_pad_mask"]
            return soft_response(self.generator, out.log_probs, pad, self.emotion_vocab, s.tau, self.match_vocab)
        if s.estimator == "gumbel":
            return gumbel_response(
                self.generator, out.encoded, self.emotion_vocab, s.tau, s.max_gen_len, self.match_vocab
            )
        return self.ids_view(self.decode(out.encoded, "sample"))

    def conditions(self, batch: dict, encoded: EncodedDialogue, rows: Tensor) -> dict[str, CriticCondition]:
        s = self.settings
        return critic_conditions(
            self.generator,
            batch,
            encoded,
            rows,
            use_feedback=s.feedback,
            grad_to_encoders=s.critic_grad_to_encoders,
            with_words=s.critic.word_match,
        )

    def critic_input(self, view: ResponseView, name: str) -> tuple[Tensor, Tensor, Tensor | None]:
        """(vectors, mask, match weight) critic ``name`` reads for ``view``: the one path for every response."""
        floor = self.settings.critic.emotion_floor
        vectors, mask = critic_response(view, name, self.settings.input_norm, floor)
        return vectors, mask, critic_match_weight(view, name, floor)

    def score(self, name: str, view: ResponseView, condition: CriticCondition) -> Tensor:
        vectors, mask, weight = self.critic_input(view, name)
        return self.critics[name](vectors, mask, **condition.critic_kwargs(), response_weight=weight)

    def rows(self, batch: dict) -> Tensor:
        return feedback_rows(batch, self.settings.feedback)

    # -- the critics' side --------------------------------------------------------------------
    def critic_loss(self, batch: dict) -> tuple[Tensor, dict[str, Tensor]] | None:
        """Both critics' losses against the frozen generator; None when no example can be read."""
        rows = self.rows(batch)
        if rows.numel() == 0:
            return None
        s = self.settings
        with torch.no_grad():
            out = self.generator(batch) if s.estimator == "soft" else None
            encoded = out.encoded if out is not None else self.generator.encode(batch)
            if out is None:
                out = GeneratorOutput(log_probs=None, encoded=encoded)
            fake = self.fake_view(batch, out).rows(rows)
            if s.greedy_negatives and s.estimator != "soft":
                greedy = self.ids_view(self.decode(encoded, "greedy")).rows(rows)
        real = gold_view(self.generator, batch, self.emotion_vocab, self.match_vocab).rows(rows)
        conditions = self.conditions(batch, encoded, rows)
        if s.greedy_negatives and s.estimator != "soft":
            # the greedy reply is what the generator says; a critic that never saw it as fake
            # rates generic fluent replies above human ones (measured: 6.7% gold > greedy)
            twice = torch.cat([torch.arange(rows.numel(), device=rows.device)] * 2)
            fake = concat_views(fake, greedy)
            real_twice, conditions_twice = real.rows(twice), {k: c.rows(twice) for k, c in conditions.items()}
        else:
            real_twice, conditions_twice = real, conditions
        mismatch = None
        if s.mismatched_negatives and s.mismatch_weight > 0 and rows.numel() >= 2:
            mismatch = mismatch_permutation(rows.numel(), device=rows.device)
        total = torch.zeros((), device=rows.device)
        logs: dict[str, Tensor] = {}
        for name in self.critics:
            condition = conditions[name]
            d_real, d_fake = self.score(name, real, condition), self.score(name, fake, conditions_twice[name])
            loss = self.rule.critic_loss(d_real, d_fake)
            short = CRITIC_SHORT[name]
            if mismatch is not None:
                d_mismatch = self.score(name, real, condition.rows(mismatch))
                w = s.mismatch_weight
                loss = (1 - w) * loss + w * self.rule.critic_loss(d_real, d_mismatch)
                logs[f"wgan/d_{short}_mismatch"] = d_mismatch.detach().mean()
            if self.rule.uses_gradient_penalty:
                loss = loss + s.gp_lambda * self._penalty(name, real_twice, fake, conditions_twice[name], logs)
            else:
                logs[f"wgan/d_{short}_acc"] = critic_accuracy(d_real.detach(), d_fake.detach())
            logs[f"wgan/d_{short}_real"] = d_real.detach().mean()
            logs[f"wgan/d_{short}_fake"] = d_fake.detach().mean()
            logs[f"wgan/d_{short}_wdist"] = wasserstein_estimate(d_real, d_fake)
            total = total + loss
        logs["wgan/d_loss"] = total.detach()
        return total, logs

    def _penalty(
        self, name: str, real: ResponseView, fake: ResponseView, condition: CriticCondition, logs: dict
    ) -> Tensor:
        real_x, real_mask, real_w = self.critic_input(real, name)
        fake_x, fake_mask, fake_w = self.critic_input(fake, name)
        real_x, real_mask, fake_x, fake_mask = aligned(real_x, real_mask, fake_x, fake_mask)
        mixed_mask = real_mask | fake_mask
        mixed_weight = None
        if real_w is not None and fake_w is not None:
            length = real_x.shape[1]  # a data-side constant: the mean of the two sides' weights
            mixed_weight = (pad_time(real_w, length) + pad_time(fake_w, length)) / 2
        critic = self.critics[name]

        def score_mixed(x: Tensor) -> Tensor:
            return critic(x, mixed_mask, **condition.critic_kwargs(), response_weight=mixed_weight)

        penalty, _ = gradient_penalty(score_mixed, real_x, fake_x)
        logs[f"wgan/gp_{CRITIC_SHORT[name]}"] = penalty.detach()
        return penalty

    # -- the generator's side -----------------------------------------------------------------
    def generator_term(self, batch: dict, out: GeneratorOutput) -> GeneratorAdversarialTerm:
        """The adversarial part of the generator loss (differentiable), for the estimator in use."""
        rows = self.rows(batch)
        zero = torch.zeros((), device=out.encoded.x0.device)
        if rows.numel() == 0:
            return GeneratorAdversarialTerm(zero, {})
        conditions = self.conditions(batch, out.encoded, rows)
        if self.settings.estimator == "reinforce":
            return self._reinforce_term(batch, out, rows, conditions)
        fake = self.fake_view(batch, out).rows(rows)
        loss = zero
        for name in self.critics:
            loss = loss + self.rule.generator_loss(self.score(name, fake, conditions[name]))
        return GeneratorAdversarialTerm(loss, {})

    def generator_loss(self, batch: dict, out: GeneratorOutput, mle: Tensor, probe: bool) -> tuple[Tensor, dict]:
        """``mle + w * the critics' term``, with w absolute (``w_adv``) or relative; and its logs.

        ``w_adv_mode=relative`` sets w so that the adversarial gradient at the decoder is
        ``w_adv_share`` times the MLE gradient there, whatever the critics' score scale. ``probe``
        (every ``probe_every`` updates) logs the ratio and cosine of the two gradients.
        """
        s = self.settings
        term = self.generator_term(batch, out)
        weight = torch.tensor(s.w_adv, device=mle.device)
        logs = dict(term.logs)
        relative = s.w_adv_mode == "relative"
        if (relative or probe) and term.loss.requires_grad and torch.is_grad_enabled():
            norm_mle, norm_adv, cosine = gradient_probe(mle, term.loss, self.generator.decoder_parameters())
            if relative:
                weight = s.w_adv_share * norm_mle / norm_adv.clamp_min(1e-12)
            logs["wgan/adv_mle_grad_ratio"] = weight * norm_adv / norm_mle.clamp_min(1e-12)
            logs["wgan/adv_mle_grad_cos"] = cosine
        logs["wgan/w_adv_effective"] = weight
        return mle + weight * term.loss, {"g_adv": term.loss, **logs}

    def reward(self, view: ResponseView, conditions: dict[str, CriticCondition]) -> Tensor:
        """Per-example reward: the critics' scores summed (log-sigmoid of the logits for the vanilla GAN)."""
        total = 0
        for name in self.critics:
            score = self.score(name, view, conditions[name])
            total = total + (F.logsigmoid(score) if self.rule.name == "gan" else score)
        return total

    def _reinforce_term(
        self, batch: dict, out: GeneratorOutput, rows: Tensor, conditions: dict[str, CriticCondition]
    ) -> GeneratorAdversarialTerm:
        encoded = out.encoded
        with torch.no_grad():
            sampled = self.decode(encoded, "sample")
            greedy = self.decode(encoded, "greedy")
            reward = self.reward(self.ids_view(sampled).rows(rows), conditions)
            baseline = self.reward(self.ids_view(greedy).rows(rows), conditions)
            advantage = reward - baseline
        log_prob = sequence_log_prob(self.generator, encoded, sampled)[rows]
        loss = -(advantage * log_prob).mean()
        logs = {
            "wgan/reinforce_reward": reward.mean(),
            "wgan/reinforce_advantage": advantage.mean(),
            "wgan/reinforce_advantage_abs": advantage.abs().mean(),
        }
        return GeneratorAdversarialTerm(loss, logs)


def concat_views(first: ResponseView, second: ResponseView) -> ResponseView:
    """Stack two views' rows (padded to one length)."""
    length = max(first.vectors.shape[1], second.vectors.shape[1])
    match = None
    if first.match_weight is not None and second.match_weight is not None:
        match = torch.cat([pad_time(first.match_weight, length), pad_time(second.match_weight, length)])
    return ResponseView(
        torch.cat([pad_time(first.vectors, length), pad_time(second.vectors, length)]),
        torch.cat([pad_time(first.mask, length), pad_time(second.mask, length)]),
        torch.cat([pad_time(first.emotion_weight, length), pad_time(second.emotion_weight, length)]),
        match,
    )


def sequence_log_prob(generator: Generator, encoded: EncodedDialogue, ids: Tensor) -> Tensor:
    """Sum of log p(ids_t | ids_<t, dialogue) up to and including the first EOS, with gradient."""
    log_probs = generator.decode_sequence(encoded, generator.embed_tokens(ids[:, :-1]))
    token_log_probs = log_probs.gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    return (token_log_probs * generated_mask(ids)).sum(dim=1)


def build_critics(settings: AdversarialConfig, input_dim: int, context_dim: int) -> nn.ModuleDict:
    """The critics switched on in ``settings`` (``adversarial.<name>_critic``), at its critic sizes."""
    sizes = settings.critic
    config = CriticConfig(
        input_dim=input_dim,
        hidden_dim=sizes.hidden_dim,
        context_dim=context_dim,
        kernel_sizes=tuple(sizes.kernel_sizes),
        num_filters=sizes.num_filters,
        use_feedback=settings.feedback,
        dropout=sizes.dropout,
        fusion=sizes.fusion,
        word_match=sizes.word_match,
        match_scale=sizes.match_scale,
    )
    return nn.ModuleDict({name: ResponseCritic(config) for name in settings.critic_names})
