"""The adversarial game of EmpDG: what the critics learn from and how their judgement reaches the generator.

The estimator of the generator's adversarial gradient (``adversarial.estimator``: reinforce, gumbel,
soft) is a rule of :mod:`empdg.models.estimators`; what each critic reads is the
:class:`~empdg.models.critic_panel.CriticPanel`'s (the chat scores through the same panel).

Mismatched negatives (``mismatch_weight > 0``): a real reply paired with another dialogue's context
and feedback is one more fake, so a critic scores *fit*, not fluency alone (matching-aware
discriminators, Reed et al. 2016).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from empdg.config.schema import AdversarialConfig
from empdg.models.base import EncodedDialogue, Generator, GeneratorOutput
from empdg.models.critic_inputs import (
    CriticCondition,
    ResponseView,
    aligned,
    mismatch_permutation,
    pad_time,
)
from empdg.models.critic_panel import CriticPanel
from empdg.models.critic_rules import get_critic_rule
from empdg.models.critics import CriticConfig
from empdg.models.decoding import DecodingConfig, decode_encoded
from empdg.models.estimators import GeneratorAdversarialTerm, get_estimator
from empdg.training.adversarial_losses import (
    critic_accuracy,
    get_adversarial_loss,
    gradient_penalty,
    wasserstein_estimate,
)
from empdg.training.instruments import gradient_probe


class AdversarialGame:
    """The critics' and the generator's adversarial objectives; owns no parameters.

    ``emotion_vocab`` is a callable returning the [V] lexicon indicator (a buffer of the module, so
    it follows the module's device); ``match_vocab`` one returning the [V] word-match weights of
    ``word_match`` critics (None: no such critic). Both go to the :class:`CriticPanel` (``panel``).
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
        self.settings = settings
        self.rule = get_adversarial_loss(settings.loss)
        self.estimator = get_estimator(settings.estimator)
        self.panel = critic_panel(settings, generator, critics, emotion_vocab, match_vocab)

    # -- responses ---------------------------------------------------------------------------
    def decode(self, encoded: EncodedDialogue, strategy: str, rng: torch.Generator | None = None) -> Tensor:
        """Free-running replies; sampling draws from ``rng`` (default: the global RNG, saved in checkpoints)."""
        # temperature 1: REINFORCE's samples must come from the policy it updates
        cfg = DecodingConfig(strategy=strategy, max_len=self.settings.max_gen_len)
        return decode_encoded(self.generator, encoded, cfg, rng)

    # -- the critics' side --------------------------------------------------------------------
    def critic_loss(self, batch: dict) -> tuple[Tensor, dict[str, Tensor]] | None:
        """Both critics' losses against the frozen generator; None when no example can be read."""
        panel, estimator = self.panel, self.estimator
        rows = panel.rows(batch)
        if rows.numel() == 0:
            return None
        s = self.settings
        with torch.no_grad():
            out = self.generator(batch) if estimator.teacher_forced else None
            encoded = out.encoded if out is not None else self.generator.encode(batch)
            if out is None:
                out = GeneratorOutput(log_probs=None, encoded=encoded)
            fake = estimator.fake_view(self, batch, out).rows(rows)
            if estimator.greedy_negatives:
                greedy = panel.ids_view(self.decode(encoded, "greedy")).rows(rows)
        real = panel.gold_view(batch).rows(rows)
        conditions = panel.conditions(batch, encoded, rows)
        if estimator.greedy_negatives:
            # the greedy reply is what the generator says; a critic that never saw it as fake
            # rates generic fluent replies above human ones (docs/critics.md)
            twice = torch.cat([torch.arange(rows.numel(), device=rows.device)] * 2)
            fake = concat_views(fake, greedy)
            real_twice, conditions_twice = real.rows(twice), {k: c.rows(twice) for k, c in conditions.items()}
        else:
            real_twice, conditions_twice = real, conditions
        mismatch = None
        if s.mismatch_weight > 0 and rows.numel() >= 2:
            mismatch = mismatch_permutation(rows.numel(), device=rows.device)
        total = torch.zeros((), device=rows.device)
        logs: dict[str, Tensor] = {}
        for name in panel:
            condition = conditions[name]
            d_real, d_fake = panel.score(name, real, condition), panel.score(name, fake, conditions_twice[name])
            loss = self.rule.critic_loss(d_real, d_fake)
            short = panel.rules[name].short
            if mismatch is not None:
                d_mismatch = panel.score(name, real, condition.rows(mismatch))
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
        real_x, real_mask, real_w = self.panel.input(real, name)
        fake_x, fake_mask, fake_w = self.panel.input(fake, name)
        real_x, real_mask, fake_x, fake_mask = aligned(real_x, real_mask, fake_x, fake_mask)
        mixed_mask = real_mask | fake_mask
        mixed_weight = None
        if real_w is not None and fake_w is not None:
            length = real_x.shape[1]  # a data-side constant: the mean of the two sides' weights
            mixed_weight = (pad_time(real_w, length) + pad_time(fake_w, length)) / 2
        critic = self.panel.critics[name]

        def score_mixed(x: Tensor) -> Tensor:
            return critic(x, mixed_mask, **condition.critic_kwargs(), response_weight=mixed_weight)

        penalty, _ = gradient_penalty(score_mixed, real_x, fake_x)
        logs[f"wgan/gp_{self.panel.rules[name].short}"] = penalty.detach()
        return penalty

    # -- the generator's side -----------------------------------------------------------------
    def generator_term(self, batch: dict, out: GeneratorOutput) -> GeneratorAdversarialTerm:
        """The adversarial part of the generator loss (differentiable), for the estimator in use."""
        rows = self.panel.rows(batch)
        if rows.numel() == 0:
            return GeneratorAdversarialTerm(torch.zeros((), device=out.encoded.x0.device), {})
        conditions = self.panel.conditions(batch, out.encoded, rows)
        return self.estimator.generator_term(self, batch, out, rows, conditions)

    def generator_loss(self, batch: dict, out: GeneratorOutput, mle: Tensor, probe: bool) -> tuple[Tensor, dict]:
        """``mle + w * the critics' term``, with w absolute (``w_adv=abs:<w>``) or relative; and its logs.

        A relative ``w_adv`` (a plain number) sets w so that the adversarial gradient at the decoder is
        that share of the MLE gradient there, whatever the critics' score scale. ``probe``
        (every ``probe_every`` updates) logs the ratio and cosine of the two gradients.
        """
        s = self.settings
        term = self.generator_term(batch, out)
        w_adv = s.weight
        weight = torch.tensor(w_adv.value, device=mle.device)
        logs = dict(term.logs)
        relative = w_adv.mode == "relative"
        if (relative or probe) and term.loss.requires_grad and torch.is_grad_enabled():
            norm_mle, norm_adv, cosine = gradient_probe(mle, term.loss, self.generator.decoder_parameters())
            if relative:
                weight = w_adv.value * norm_mle / norm_adv.clamp_min(1e-12)
            logs["wgan/adv_mle_grad_ratio"] = weight * norm_adv / norm_mle.clamp_min(1e-12)
            logs["wgan/adv_mle_grad_cos"] = cosine
        logs["wgan/w_adv_effective"] = weight
        return mle + weight * term.loss, {"g_adv": term.loss, **logs}

    def reward(self, view: ResponseView, conditions: dict[str, CriticCondition]) -> Tensor:
        """Per-example reward: the critics' scores summed (log-sigmoid of the logits for the vanilla GAN)."""
        total = 0
        for name in self.panel:
            score = self.panel.score(name, view, conditions[name])
            total = total + (F.logsigmoid(score) if self.rule.name == "gan" else score)
        return total


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


def build_critics(settings: AdversarialConfig, input_dim: int, context_dim: int) -> nn.ModuleDict:
    """The critics ``settings`` names, in their fixed order, each built by its rule at the critic sizes."""
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
    )
    return nn.ModuleDict({name: get_critic_rule(name).build(config) for name in settings.critic_names})


def critic_panel(
    settings: AdversarialConfig,
    generator: Generator,
    critics: nn.ModuleDict,
    emotion_vocab: Callable[[], Tensor],
    match_vocab: Callable[[], Tensor | None] = lambda: None,
) -> CriticPanel:
    """``critics`` reading replies as ``settings`` say: the game's panel, and the one a checkpoint loaded for
    inference scores with (training/checkpoint.py)."""
    return CriticPanel(
        generator,
        critics,
        emotion_vocab=emotion_vocab,
        match_vocab=match_vocab,
        emotion_floor=settings.critic.emotion_floor,
        unit_norm=get_estimator(settings.estimator).unit_norm,
        feedback=settings.feedback,
        word_match=settings.critic.word_match,
    )
