"""The LightningModule that trains EmpDG with manual optimization.

Manual optimization: the adversarial phases step two optimizers (generator, critics) in a custom
order -- ``n_critic`` critic updates, each on its own batch, then ``g_steps`` generator updates --
so each phase is a method ``_train_<phase>`` and ``training_step`` only dispatches. Counters,
phase progress, the position in the critic/generator cycle and RNG states are saved in
checkpoints so that a resumed run continues exactly.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric, SumMetric
from torchmetrics.classification import MulticlassAccuracy

from empdg.data.emotion_words import get_lexicon
from empdg.data.vocab import Vocab
from empdg.evaluation.decoding import greedy_decode, ids_to_text
from empdg.models.config import GeneratorConfig
from empdg.models.critics import CriticConfig, ResponseCritic
from empdg.models.generator import EmpDGGenerator, GeneratorOutput
from empdg.training.adversarial_losses import (
    clip_critic_weights,
    critic_accuracy,
    get_adversarial_loss,
    gradient_penalty,
    wasserstein_estimate,
)
from empdg.training.critic_inputs import CriticInputs, critic_inputs, feedback_rows
from empdg.training.losses import emotion_cross_entropy, sequence_nll
from empdg.training.phases import PHASES, PhaseSchedule
from empdg.training.relaxation import RELAXATIONS, RelaxedResponse, gumbel_response, soft_response
from empdg.training.schedules import build_scheduler

CRITIC_PHASES = ("critic_pretrain", "adversarial")


class NonFiniteLossError(RuntimeError):
    pass


class EmpDGModule(pl.LightningModule):
    def __init__(
        self,
        model: Mapping[str, Any],
        optim: Mapping[str, Any],
        training: Mapping[str, Any],
        vocab_tokens: list[str],
        adversarial: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.automatic_optimization = False
        self.vocab = Vocab(vocab_tokens)
        self.generator_config = GeneratorConfig.from_mapping(dict(model), vocab_size=len(self.vocab))
        self.generator = EmpDGGenerator(self.generator_config)
        self.optim_cfg = dict(optim)
        self.train_cfg = dict(training)
        self.adv_cfg = dict(adversarial or {})
        self.critics = self._build_critics(dict(model))
        budgets = dict(self.train_cfg["phases"])
        if not self.critics:  # generator-only models skip the critic phases
            budgets = {k: v for k, v in budgets.items() if k not in CRITIC_PHASES}
        self.phases = PhaseSchedule(budgets)
        if self.critics:
            self.adversarial_loss = get_adversarial_loss(self.adv_cfg["loss"])
            if self.adv_cfg["relaxation"] not in RELAXATIONS:
                raise ValueError(f"adversarial.relaxation={self.adv_cfg['relaxation']!r}; choose one of {RELAXATIONS}")
            emotion_ids = self.vocab.emotion_token_ids(get_lexicon().is_emotion_word)
            emotion_vocab = torch.zeros(len(self.vocab))
            emotion_vocab[emotion_ids] = 1.0
            self.register_buffer("emotion_vocab", emotion_vocab, persistent=False)
        self.micro_step = 0
        self.cycle_position = 0
        self.batches_in_epoch = 0
        self.step_metrics: dict[str, float] = {}
        self.skipped_nonfinite = 0
        self.wasserstein_history: list[dict[str, float]] = []
        self.val_loss = MeanMetric()
        self.val_nll = SumMetric()
        self.val_tokens = SumMetric()
        self.val_emotion_acc = MulticlassAccuracy(num_classes=self.generator_config.num_emotions, average="micro")

    def _build_critics(self, model: dict[str, Any]) -> nn.ModuleDict:
        names = [n for n in ("semantic", "emotion") if model.get(f"{n}_critic", False)]
        if not names:
            return nn.ModuleDict()
        critic = self.adv_cfg["critic"]
        config = CriticConfig(
            input_dim=self.generator_config.emb_dim,
            hidden_dim=int(critic["hidden_dim"]),
            context_dim=self.generator_config.hidden_dim,
            kernel_sizes=tuple(critic["kernel_sizes"]),
            num_filters=int(critic["num_filters"]),
            use_feedback=bool(self.adv_cfg["feedback"]),
            dropout=float(critic["dropout"]),
        )
        return nn.ModuleDict({name: ResponseCritic(config) for name in names})

    # -- optimizers ------------------------------------------------------------------------
    def configure_optimizers(self):
        cfg = self.optim_cfg
        generator_opt = torch.optim.Adam(
            self.generator.parameters(),
            lr=float(cfg["lr"]),
            betas=tuple(cfg["betas"]),
            eps=float(cfg["eps"]),
            weight_decay=float(cfg["weight_decay"]),
        )
        optimizers = [generator_opt]
        if self.critics:
            optimizers.append(
                torch.optim.Adam(
                    self.critics.parameters(),
                    lr=float(self.adv_cfg["critic_lr"]),
                    betas=tuple(self.adv_cfg["critic_betas"]),
                )
            )
        scheduler = build_scheduler(
            generator_opt,
            cfg["scheduler"],
            self.generator_config.hidden_dim,
            int(cfg["warmup_steps"]),
            float(cfg["noam_factor"]),
        )
        if scheduler is None:
            return optimizers
        return optimizers, [{"scheduler": scheduler, "interval": "step"}]

    def _optimizers(self) -> list:
        optimizers = self.optimizers()
        return optimizers if isinstance(optimizers, list) else [optimizers]

    def _generator_scheduler(self):
        schedulers = self.lr_schedulers()
        if isinstance(schedulers, list):
            return schedulers[0] if schedulers else None
        return schedulers

    # -- losses ----------------------------------------------------------------------------
    def generator_losses(self, batch: dict, out: GeneratorOutput | None = None) -> dict[str, Tensor]:
        """MLE pieces of the generator objective for one batch (teacher forcing)."""
        out = self.generator(batch) if out is None else out
        target = batch["target_ext_ids"] if self.generator_config.copy else batch["target_ids"]
        seq = sequence_nll(out.log_probs, target, float(self.train_cfg["label_smoothing"]), len(self.vocab))
        emotion_ce = emotion_cross_entropy(out.encoded.emotion_logits, batch["emotion_label"])
        loss = seq.loss + float(self.train_cfg["emotion_loss_weight"]) * emotion_ce
        return {
            "loss": loss,
            "nll": seq.nll_sum / seq.n_tokens.clamp_min(1),
            "nll_sum": seq.nll_sum,
            "n_tokens": seq.n_tokens,
            "emotion_ce": emotion_ce,
            "emotion_logits": out.encoded.emotion_logits,
        }

    def check_finite(self, name: str, value: Tensor) -> bool:
        """Stop with a clear error, or skip the update and count it -- never train on NaN/inf."""
        if torch.isfinite(value).all():
            return True
        where = f"{name}={value.item()} at global step {self.global_step} (phase {self.phases.current})"
        if self.train_cfg["on_nonfinite"] == "skip":
            self.skipped_nonfinite += 1
            self.log("train/skipped_nonfinite", float(self.skipped_nonfinite))
            return False
        raise NonFiniteLossError(
            f"non-finite {where}; lower the learning rate, enable gradient clipping, or set "
            "training.on_nonfinite=skip to skip such updates"
        )

    # -- training --------------------------------------------------------------------------
    def _log_train(self, values: dict[str, Tensor], **kwargs: Any) -> None:
        """Log training values and keep this step's values (callbacks and tests read them)."""
        self.log_dict(values, **kwargs)
        self.step_metrics.update({k: float(v) for k, v in values.items()})

    def training_step(self, batch: dict, batch_idx: int) -> None:
        self.step_metrics: dict[str, float] = {}
        self.batches_in_epoch = batch_idx + 1
        phase = self.phases.current
        if phase is None:
            self.trainer.should_stop = True
            return
        getattr(self, f"_train_{phase}")(batch)
        self.log("train/phase", float(PHASES.index(phase)))
        if self.phases.current is None:
            self.trainer.should_stop = True

    def _train_generator_pretrain(self, batch: dict) -> None:
        accumulate = int(self.train_cfg["accumulate_grad_batches"])
        optimizer = self._optimizers()[0]
        losses = self.generator_losses(batch)
        if not self.check_finite("train/loss", losses["loss"].detach()):
            optimizer.zero_grad()
            self.micro_step = 0
            return
        self.manual_backward(losses["loss"] / accumulate)
        self.micro_step += 1
        if self.micro_step % accumulate == 0:
            self.micro_step = 0
            self.generator_update(optimizer)
            self.phases.advance("generator_pretrain")
        self._log_mle(losses, batch)

    def _train_critic_pretrain(self, batch: dict) -> None:
        if self.critic_update(batch):
            self.phases.advance("critic_pretrain")

    def _train_adversarial(self, batch: dict) -> None:
        n_critic, g_steps = int(self.adv_cfg["n_critic"]), int(self.adv_cfg["g_steps"])
        if self.cycle_position < n_critic:
            done = self.critic_update(batch)
        else:
            done = self.generator_adversarial_update(batch)
        if not done:
            return
        self.cycle_position += 1
        if self.cycle_position == n_critic + g_steps:
            self.cycle_position = 0
            self.phases.advance("adversarial")

    def _log_mle(self, losses: dict[str, Tensor], batch: dict) -> None:
        self._log_train(
            {
                "train/loss": losses["loss"].detach(),
                "train/nll": losses["nll"],
                "train/emotion_ce": losses["emotion_ce"].detach(),
            },
            prog_bar=True,
            batch_size=batch["target_ids"].shape[0],
        )

    def generator_update(self, optimizer) -> None:
        """Clip, step, zero and advance the schedule of the generator optimizer."""
        clip = self.train_cfg.get("gradient_clip_val")
        norm = torch.nn.utils.clip_grad_norm_(self.generator.parameters(), float(clip) if clip else float("inf"))
        self.log("train/g_grad_norm", norm)
        optimizer.step()
        optimizer.zero_grad()
        scheduler = self._generator_scheduler()
        if scheduler is not None:
            scheduler.step()
            self.log("train/lr", scheduler.get_last_lr()[0])

    # -- the adversarial game --------------------------------------------------------------
    def relaxed_response(self, out: GeneratorOutput, batch: dict) -> RelaxedResponse:
        tau = float(self.adv_cfg["tau"])
        if self.adv_cfg["relaxation"] == "soft":
            return soft_response(self.generator, out.log_probs, batch["target_pad_mask"], self.emotion_vocab, tau)
        return gumbel_response(self.generator, out.encoded, self.emotion_vocab, tau, int(self.adv_cfg["max_gen_len"]))

    def _critic_inputs(
        self, batch: dict, out: GeneratorOutput, fake: RelaxedResponse
    ) -> dict[str, CriticInputs] | None:
        use_feedback = bool(self.adv_cfg["feedback"])
        rows = feedback_rows(batch, use_feedback)
        if rows.numel() == 0:
            self.log("train/critic_batches_without_feedback", 1.0, reduce_fx="sum")
            return None
        return critic_inputs(
            self.generator,
            batch,
            out.encoded,
            fake,
            rows,
            use_feedback=use_feedback,
            grad_to_encoders=bool(self.adv_cfg["critic_grad_to_encoders"]),
        )

    def _score(self, name: str, inputs: CriticInputs, which: str) -> Tensor:
        critic = self.critics[name]
        response, mask = (inputs.real, inputs.real_mask) if which == "real" else (inputs.fake, inputs.fake_mask)
        return critic(response, mask, inputs.context, inputs.feedback, inputs.feedback_mask)

    def critic_losses(self, batch: dict) -> tuple[Tensor, dict[str, Tensor]] | None:
        """Both critics' losses against the current generator, which is frozen here (no_grad).

        None when the batch has no example the critics can read (no feedback anywhere).
        """
        with torch.no_grad():
            out = self.generator(batch)
            fake = self.relaxed_response(out, batch)
        inputs = self._critic_inputs(batch, out, fake)
        if inputs is None:
            return None
        rule = self.adversarial_loss
        total = torch.zeros((), device=self.device)
        logs: dict[str, Tensor] = {}
        for name, critic_in in inputs.items():
            if name not in self.critics:
                continue
            d_real, d_fake = self._score(name, critic_in, "real"), self._score(name, critic_in, "fake")
            loss = rule.critic_loss(d_real, d_fake)
            short = name[:3]
            if rule.uses_gradient_penalty:
                critic = self.critics[name]

                def score_mixed(x: Tensor, critic=critic, ci=critic_in) -> Tensor:
                    return critic(x, ci.mixed_mask, ci.context, ci.feedback, ci.feedback_mask)

                penalty, _ = gradient_penalty(score_mixed, critic_in.real, critic_in.fake)
                loss = loss + float(self.adv_cfg["gp_lambda"]) * penalty
                logs[f"train/gp_{short}"] = penalty.detach()
            else:
                logs[f"train/d_{short}_acc"] = critic_accuracy(d_real.detach(), d_fake.detach())
            logs[f"train/d_{short}_wdist"] = wasserstein_estimate(d_real, d_fake)
            total = total + loss
        logs["train/d_loss"] = total.detach()
        return total, logs

    def critic_update(self, batch: dict) -> bool:
        """One update of both critics; False when the batch gave nothing to learn from (or was skipped)."""
        result = self.critic_losses(batch)
        if result is None:
            return False
        total, logs = result
        optimizer = self._optimizers()[1]
        if not self.check_finite("train/d_loss", total.detach()):
            optimizer.zero_grad()
            return False
        self.manual_backward(total)
        logs["train/d_grad_norm"] = torch.nn.utils.clip_grad_norm_(self.critics.parameters(), float("inf"))
        optimizer.step()
        optimizer.zero_grad()
        if self.adversarial_loss.clips_weights:
            clip_critic_weights(self.critics, float(self.adv_cfg["clip_value"]))
        self._log_train(logs)
        self.wasserstein_history.append(
            {"step": float(self.global_step), **{k: float(v) for k, v in logs.items() if k.endswith("wdist")}}
        )
        return True

    def adversarial_generator_loss(self, batch: dict) -> tuple[Tensor, dict[str, Tensor]]:
        """mle_weight * (MLE + emotion CE) + w_adv * critics' generator loss on the relaxed response.

        The relaxed response is a differentiable function of the generator's output
        distribution, so the critics' gradient reaches the decoder (and, through it, the encoders).
        """
        out = self.generator(batch)
        losses = self.generator_losses(batch, out)
        fake = self.relaxed_response(out, batch)
        inputs = self._critic_inputs(batch, out, fake)
        adv = torch.zeros((), device=self.device)
        if inputs is not None:
            for name, critic_in in inputs.items():
                if name in self.critics:
                    adv = adv + self.adversarial_loss.generator_loss(self._score(name, critic_in, "fake"))
        loss = float(self.adv_cfg["mle_weight"]) * losses["loss"] + float(self.adv_cfg["w_adv"]) * adv
        return loss, {**losses, "g_adv": adv}

    def generator_adversarial_update(self, batch: dict) -> bool:
        optimizer = self._optimizers()[0]
        loss, parts = self.adversarial_generator_loss(batch)
        if not self.check_finite("train/g_loss", loss.detach()):
            optimizer.zero_grad()
            return False
        self.manual_backward(loss)
        self._optimizers()[1].zero_grad()  # critics are judges here, not students
        self.generator_update(optimizer)
        self._log_mle(parts, batch)
        self._log_train({"train/g_adv": parts["g_adv"].detach(), "train/g_loss": loss.detach()})
        return True

    # -- validation ------------------------------------------------------------------------
    def validation_step(self, batch: dict, batch_idx: int) -> None:
        losses = self.generator_losses(batch)
        size = batch["target_ids"].shape[0]
        self.val_loss.update(losses["nll"] + losses["emotion_ce"], weight=size)
        self.val_nll.update(losses["nll_sum"])
        self.val_tokens.update(losses["n_tokens"].float())
        if losses["emotion_logits"] is not None:
            self.val_emotion_acc.update(losses["emotion_logits"], batch["emotion_label"])

    def on_validation_epoch_end(self) -> None:
        nll = self.val_nll.compute() / self.val_tokens.compute().clamp_min(1)
        metrics = {"val/loss": self.val_loss.compute(), "val/ppl": torch.exp(nll), "val/nll": nll}
        if self.generator_config.emotion_classifier:
            metrics["val/emotion_acc"] = self.val_emotion_acc.compute()
        # the torchmetrics states are already reduced across ranks; sync_dist only silences the check
        self.log_dict(metrics, prog_bar=True, sync_dist=True)
        for metric in (self.val_loss, self.val_nll, self.val_tokens, self.val_emotion_acc):
            metric.reset()

    # -- generation ------------------------------------------------------------------------
    def generate_replies(self, batch: dict, max_len: int = 30) -> list[str]:
        ids = greedy_decode(self.generator, batch, max_len=max_len)
        return [ids_to_text(row, self.vocab, oovs) for row, oovs in zip(ids.tolist(), batch["oovs"])]

    # -- checkpoints -----------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["empdg"] = {
            "phases": self.phases.state_dict(),
            "micro_step": self.micro_step,
            "cycle_position": self.cycle_position,
            "batches_in_epoch": self.batches_in_epoch,
            "skipped_nonfinite": self.skipped_nonfinite,
            "rng": {
                "torch": torch.get_rng_state(),
                "python": random.getstate(),
                "numpy": _plain_numpy_state(),
            },
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("empdg")
        if not state:
            return
        self.phases.load_state_dict(state["phases"])
        self.micro_step = state["micro_step"]
        self.cycle_position = state.get("cycle_position", 0)
        self.batches_in_epoch = state["batches_in_epoch"]
        self.skipped_nonfinite = state["skipped_nonfinite"]
        self._rng_to_restore = state["rng"]
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is not None and hasattr(datamodule, "resume_after"):
            datamodule.resume_after(self.batches_in_epoch)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """Restore RNG right before the first resumed batch: creating the data iterator (which
        happens after every other hook on resume) draws from the global RNG."""
        rng = getattr(self, "_rng_to_restore", None)
        if rng is not None:
            # a checkpoint written by the end-of-budget validation predates Lightning's increment of
            # its logging step; without this a resumed run logs every metric one step too low
            epoch_loop = self.trainer.fit_loop.epoch_loop
            epoch_loop._batches_that_stepped = epoch_loop.total_batch_idx
            torch.set_rng_state(rng["torch"])
            random.setstate(rng["python"])
            name, keys, pos, has_gauss, cached = rng["numpy"]
            np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
            self._rng_to_restore = None


def _plain_numpy_state() -> list:
    """numpy's RNG state as plain Python values, so checkpoints load with ``weights_only=True``."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]
