"""The critic phases of training: critic updates and adversarial generator updates, in EmpDG's order.

An adversarial cycle is ``adversarial.n_critic`` critic updates, each on its own batch, then
``adversarial.g_steps`` generator updates; critic pre-training is critic updates alone. Each update
runs with only its own optimizer's parameters requiring grad (Lightning's ``toggled_optimizer``): the
critics are judges during a generator update, not students, and the generator is frozen while the
critics learn. The objectives themselves are the game's (training/adversarial.py).

:class:`AdversarialSteps` is a mixin of :class:`~empdg.training.module.EmpDGModule`: it uses the
module's ``game``, ``adv`` settings, ``counters``, ``phases``, optimizers and logging.
"""

from __future__ import annotations

import torch
from torch import Tensor

from empdg.training.adversarial_losses import clip_critic_weights


class AdversarialSteps:
    # -- the phase steps ---------------------------------------------------------------------------
    def train_critic_pretrain(self, batch: dict) -> None:
        if self.critic_update(batch):
            self.phases.advance("critic_pretrain")

    def train_adversarial(self, batch: dict) -> None:
        n_critic, g_steps = self.adv.n_critic, self.adv.g_steps
        counters = self.counters
        if counters.cycle_position < n_critic:
            done = self.critic_update(batch)
        else:
            done = self.generator_adversarial_update(batch)
        if not done:
            return
        counters.cycle_position += 1
        if counters.cycle_position == n_critic + g_steps:
            counters.cycle_position = 0
            self.phases.advance("adversarial")

    # -- the critics' side -----------------------------------------------------------------------
    def critic_losses(self, batch: dict) -> tuple[Tensor, dict[str, Tensor]] | None:
        """Both critics' losses against the frozen generator; None when no example has feedback."""
        result = self.game.critic_loss(batch)
        if result is None:
            self.log("wgan/critic_batches_without_feedback", 1.0, reduce_fx="sum")
        return result

    def critic_update(self, batch: dict) -> bool:
        """One update of both critics; False when the batch gave nothing to learn from (or was skipped)."""
        optimizer = self.critic_optimizer()
        with self.toggled_optimizer(optimizer):
            result = self.critic_losses(batch)
            if result is None:
                return False
            total, logs = result
            if not self.check_finite("wgan/d_loss", total.detach()):
                optimizer.zero_grad()
                return False
            self.manual_backward(total)
            optimizer.step()  # on_before_optimizer_step measures the gradient norm
            optimizer.zero_grad()
        logs["wgan/d_grad_norm"] = self.last_grad_norm
        if self.game.rule.clips_weights:
            clip_critic_weights(self.critics)
        self.log_every_update(logs)
        self.wasserstein_history.append(
            {"step": float(self.global_step), **{k: float(v) for k, v in logs.items() if k.endswith("wdist")}}
        )
        return True

    # -- the generator's side -----------------------------------------------------------------------
    def adversarial_generator_loss(self, batch: dict) -> tuple[Tensor, dict[str, Tensor]]:
        """``mle_weight * (MLE + emotion CE) + w * the critics' term`` (w: see ``game.generator_loss``).

        The same-batch control (``adversarial.w_adv=0``) trains on the same batches with
        the critics still learning, but without their term.
        """
        out = self.generator(batch)
        losses = self.generator_losses(batch, out)
        mle = self.adv.mle_weight * losses["loss"]
        if self.adv.weight.mode == "off":
            return mle, {**losses, "g_adv": torch.zeros((), device=mle.device)}
        self.counters.generator_adv_updates += 1
        every = self.adv.probe_every
        probe = every > 0 and self.counters.generator_adv_updates % every == 0
        loss, logs = self.game.generator_loss(batch, out, mle, probe)
        return loss, {**losses, **logs}

    def generator_adversarial_update(self, batch: dict) -> bool:
        """One generator update against the critics; False when skipped (non-finite loss)."""
        optimizer = self.generator_optimizer()
        with self.toggled_optimizer(optimizer):
            loss, parts = self.adversarial_generator_loss(batch)
            if not self.check_finite("wgan/g_loss", loss.detach()):
                optimizer.zero_grad()
                return False
            self.manual_backward(loss)
            self.generator_update(optimizer)
        self.log_mle(parts, batch)
        extra = {k: v.detach() for k, v in parts.items() if k.startswith("wgan/")}
        self.log_every_update({"wgan/g_adv": parts["g_adv"].detach(), "wgan/g_loss": loss.detach(), **extra})
        return True

    def log_every_update(self, values: dict[str, Tensor]) -> None:
        """Straight to the loggers, so no critic update falls between ``log_every_n_steps``."""
        self.step_metrics.update({k: float(v) for k, v in values.items()})
        if self._trainer is None or self.trainer.sanity_checking:
            return
        for logger in self.loggers:
            logger.log_metrics({k: float(v) for k, v in values.items()}, step=self.global_step)
