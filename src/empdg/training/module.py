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
from torch import Tensor
from torchmetrics import MeanMetric, SumMetric
from torchmetrics.classification import MulticlassAccuracy

from empdg.data.emotion_words import get_lexicon
from empdg.data.vocab import Vocab
from empdg.models.config import GeneratorConfig
from empdg.models.decoding import greedy_decode, ids_to_text
from empdg.models.generator import EmpDGGenerator, GeneratorOutput
from empdg.training.adversarial import AdversarialGame, AdversarialSettings, build_critics
from empdg.training.adversarial_losses import clip_critic_weights
from empdg.training.instruments import (
    critic_report_counts,
    gradient_probe,
    output_sharpness,
    reply_diversity,
    shares_from_counts,
)
from empdg.training.losses import emotion_cross_entropy, sequence_nll
from empdg.training.phases import PHASES, PhaseSchedule
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
        self.adv = AdversarialSettings.from_mapping(dict(adversarial or {}))
        critic_names = [n for n in ("semantic", "emotion") if model.get(f"{n}_critic", False)]
        self.critics = build_critics(
            self.adv, critic_names, self.generator_config.emb_dim, self.generator_config.hidden_dim
        )
        budgets = dict(self.train_cfg["phases"])
        if not self.critics:  # generator-only models skip the critic phases
            budgets = {k: v for k, v in budgets.items() if k not in CRITIC_PHASES}
        self.phases = PhaseSchedule(budgets)
        emotion_vocab = torch.zeros(len(self.vocab))
        emotion_vocab[self.vocab.emotion_token_ids(get_lexicon().is_emotion_word)] = 1.0
        self.register_buffer("emotion_vocab", emotion_vocab, persistent=False)
        self.game = AdversarialGame(self.generator, self.critics, self.adv, lambda: self.emotion_vocab)
        self.generator_adv_updates = 0
        self.critic_reports: list[dict[str, float]] = []
        self._report_counts: dict[str, float] = {}
        self._report_replies: list[str] = []
        self.val_entropy = SumMetric()
        self.val_max_prob = SumMetric()
        self.val_positions = SumMetric()
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
                    lr=float(self.adv.critic_lr),
                    betas=tuple(self.adv.critic_betas),
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
        n_critic, g_steps = self.adv.n_critic, self.adv.g_steps
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

    # -- the adversarial game (objectives in training/adversarial.py) ------------------------
    def critic_losses(self, batch: dict) -> tuple[Tensor, dict[str, Tensor]] | None:
        """Both critics' losses against the frozen generator; None when no example has feedback."""
        result = self.game.critic_loss(batch)
        if result is None:
            self.log("train/critic_batches_without_feedback", 1.0, reduce_fx="sum")
        return result

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
        if self.game.rule.clips_weights:
            clip_critic_weights(self.critics, self.adv.clip_value)
        self._log_every_update(logs)
        self.wasserstein_history.append(
            {"step": float(self.global_step), **{k: float(v) for k, v in logs.items() if k.endswith("wdist")}}
        )
        return True

    def _log_every_update(self, values: dict[str, Tensor]) -> None:
        """Straight to the loggers, so no critic update falls between ``log_every_n_steps``."""
        self.step_metrics.update({k: float(v) for k, v in values.items()})
        if self._trainer is None or self.trainer.sanity_checking:
            return
        for logger in self.loggers:
            logger.log_metrics({k: float(v) for k, v in values.items()}, step=self.global_step)

    def adversarial_generator_loss(self, batch: dict) -> tuple[Tensor, dict[str, Tensor]]:
        """mle_weight * (MLE + emotion CE) + w * the critics' term, with w absolute or relative.

        ``w_adv_mode=relative`` sets w so that the adversarial gradient at the decoder is
        ``w_adv_share`` times the MLE gradient there, whatever the critics' score scale. The
        same-batch control (``same_batch_control``) trains on the same batches with the critics
        still learning, but without their term.
        """
        out = self.generator(batch)
        losses = self.generator_losses(batch, out)
        mle = self.adv.mle_weight * losses["loss"]
        if self.adv.same_batch_control:
            return mle, {**losses, "g_adv": torch.zeros((), device=mle.device)}
        term = self.game.generator_term(batch, out)
        weight = torch.tensor(self.adv.w_adv, device=mle.device)
        logs = dict(term.logs)
        self.generator_adv_updates += 1
        relative = self.adv.w_adv_mode == "relative"
        probe = self.adv.probe_every > 0 and self.generator_adv_updates % self.adv.probe_every == 0
        if (relative or probe) and term.loss.requires_grad and torch.is_grad_enabled():
            norm_mle, norm_adv, cosine = gradient_probe(mle, term.loss, self.generator.decoder_parameters())
            if relative:
                weight = self.adv.w_adv_share * norm_mle / norm_adv.clamp_min(1e-12)
            logs["train/adv_mle_grad_ratio"] = weight * norm_adv / norm_mle.clamp_min(1e-12)
            logs["train/adv_mle_grad_cos"] = cosine
        logs["train/w_adv_effective"] = weight
        return mle + weight * term.loss, {**losses, "g_adv": term.loss, **logs}

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
        extra = {k: v.detach() for k, v in parts.items() if k.startswith("train/")}
        self._log_every_update({"train/g_adv": parts["g_adv"].detach(), "train/g_loss": loss.detach(), **extra})
        return True

    # -- validation ------------------------------------------------------------------------
    def validation_step(self, batch: dict, batch_idx: int) -> None:
        out = self.generator(batch)
        losses = self.generator_losses(batch, out)
        size = batch["target_ids"].shape[0]
        self.val_loss.update(losses["nll"] + losses["emotion_ce"], weight=size)
        self.val_nll.update(losses["nll_sum"])
        self.val_tokens.update(losses["n_tokens"].float())
        if losses["emotion_logits"] is not None:
            self.val_emotion_acc.update(losses["emotion_logits"], batch["emotion_label"])
        entropy, max_prob, positions = output_sharpness(
            out.log_probs[..., : len(self.vocab)], ~batch["target_pad_mask"]
        )
        self.val_entropy.update(entropy)
        self.val_max_prob.update(max_prob)
        self.val_positions.update(positions)
        if batch_idx < self.adv.report_batches and not self.trainer.sanity_checking:
            self._report_on(batch, out)

    def _report_on(self, batch: dict, out: GeneratorOutput) -> None:
        """Critic report and greedy replies on the first validation batches (the same ones every time)."""
        counts, greedy = critic_report_counts(self.game, batch, out)
        for key, value in counts.items():
            self._report_counts[key] = self._report_counts.get(key, 0.0) + value
        self._report_replies += [ids_to_text(r, self.vocab, o) for r, o in zip(greedy.tolist(), batch["oovs"])]

    def on_validation_epoch_end(self) -> None:
        nll = self.val_nll.compute() / self.val_tokens.compute().clamp_min(1)
        positions = self.val_positions.compute().clamp_min(1)
        metrics = {
            "val/loss": self.val_loss.compute(),
            "val/ppl": torch.exp(nll),
            "val/nll": nll,
            "val/entropy": self.val_entropy.compute() / positions,
            "val/max_prob": self.val_max_prob.compute() / positions,
        }
        if self.generator_config.emotion_classifier:
            metrics["val/emotion_acc"] = self.val_emotion_acc.compute()
        # the torchmetrics states are already reduced across ranks; sync_dist only silences the check
        self.log_dict(metrics, prog_bar=True, sync_dist=True)
        for metric in (self.val_loss, self.val_nll, self.val_tokens, self.val_emotion_acc):
            metric.reset()
        for metric in (self.val_entropy, self.val_max_prob, self.val_positions):
            metric.reset()
        self._finish_report()

    def _finish_report(self) -> None:
        """Log this validation's critic report (summed over ranks) and keep it for critic_report.md."""
        counts, replies = self._report_counts, self._report_replies
        self._report_counts, self._report_replies = {}, []
        if not replies:
            return
        keys = sorted(counts)
        if keys and self.trainer.world_size > 1:
            summed = self.trainer.strategy.reduce(
                torch.tensor([counts[k] for k in keys], device=self.device, dtype=torch.float64), reduce_op="sum"
            )
            counts = dict(zip(keys, summed.tolist()))
        report = {f"critic/{k}": v for k, v in shares_from_counts(counts).items()}
        report |= {f"val/greedy_{k}": v for k, v in reply_diversity(replies).items()}
        self.log_dict({k: float(v) for k, v in report.items()}, sync_dist=False, rank_zero_only=True)
        self.critic_reports.append({"step": float(self.global_step), **report})

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
            "generator_adv_updates": self.generator_adv_updates,
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
        self.generator_adv_updates = state.get("generator_adv_updates", 0)
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
