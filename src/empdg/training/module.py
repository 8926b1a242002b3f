"""The LightningModule that trains EmpDG with manual optimization.

Manual optimization from the start: the adversarial phases need several optimizers stepped in a
custom order (n_critic critic updates per generator update), so each phase is a method
``_train_<phase>`` and ``training_step`` only dispatches. Counters, phase progress and RNG states
are saved in checkpoints so a resumed run continues exactly.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torchmetrics import MeanMetric, SumMetric
from torchmetrics.classification import MulticlassAccuracy

from empdg.data.vocab import Vocab
from empdg.evaluation.decoding import greedy_decode, ids_to_text
from empdg.models.config import GeneratorConfig
from empdg.models.generator import EmpDGGenerator
from empdg.training.losses import emotion_cross_entropy, sequence_nll
from empdg.training.phases import PhaseSchedule
from empdg.training.schedules import build_scheduler


class NonFiniteLossError(RuntimeError):
    pass


class EmpDGModule(pl.LightningModule):
    def __init__(
        self,
        model: Mapping[str, Any],
        optim: Mapping[str, Any],
        training: Mapping[str, Any],
        vocab_tokens: list[str],
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.automatic_optimization = False
        self.vocab = Vocab(vocab_tokens)
        self.generator_config = GeneratorConfig.from_mapping(dict(model), vocab_size=len(self.vocab))
        self.generator = EmpDGGenerator(self.generator_config)
        self.optim_cfg = dict(optim)
        self.train_cfg = dict(training)
        self.phases = PhaseSchedule(self.train_cfg["phases"])
        self.micro_step = 0
        self.batches_in_epoch = 0
        self.skipped_nonfinite = 0
        self.val_loss = MeanMetric()
        self.val_nll = SumMetric()
        self.val_tokens = SumMetric()
        self.val_emotion_acc = MulticlassAccuracy(
            num_classes=self.generator_config.num_emotions, average="micro"
        )

    # -- optimizers ------------------------------------------------------------------------
    def configure_optimizers(self):
        cfg = self.optim_cfg
        optimizer = torch.optim.Adam(
            self.generator.parameters(),
            lr=float(cfg["lr"]),
            betas=tuple(cfg["betas"]),
            eps=float(cfg["eps"]),
            weight_decay=float(cfg["weight_decay"]),
        )
        scheduler = build_scheduler(
            optimizer,
            cfg["scheduler"],
            self.generator_config.hidden_dim,
            int(cfg["warmup_steps"]),
            float(cfg["noam_factor"]),
        )
        if scheduler is None:
            return [optimizer]
        return [optimizer], [{"scheduler": scheduler, "interval": "step"}]

    def _generator_optimizer(self):
        optimizers = self.optimizers()
        return optimizers[0] if isinstance(optimizers, list) else optimizers

    def _generator_scheduler(self):
        schedulers = self.lr_schedulers()
        if isinstance(schedulers, list):
            return schedulers[0] if schedulers else None
        return schedulers

    # -- losses ----------------------------------------------------------------------------
    def generator_losses(self, batch: dict) -> dict[str, torch.Tensor]:
        """MLE pieces of the generator objective for one batch (teacher forcing)."""
        out = self.generator(batch)
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

    def check_finite(self, name: str, value: torch.Tensor) -> bool:
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
    def training_step(self, batch: dict, batch_idx: int) -> None:
        self.batches_in_epoch = batch_idx + 1
        phase = self.phases.current
        if phase is None:
            self.trainer.should_stop = True
            return
        getattr(self, f"_train_{phase}")(batch)
        self.log("train/phase", float(self.phases.total_done), prog_bar=False)
        if self.phases.current is None:
            self.trainer.should_stop = True

    def _train_generator_pretrain(self, batch: dict) -> None:
        accumulate = int(self.train_cfg["accumulate_grad_batches"])
        optimizer = self._generator_optimizer()
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
        self.log_dict(
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
        if clip:
            norm = torch.nn.utils.clip_grad_norm_(self.generator.parameters(), float(clip))
            self.log("train/g_grad_norm", norm)
        optimizer.step()
        optimizer.zero_grad()
        scheduler = self._generator_scheduler()
        if scheduler is not None:
            scheduler.step()
            self.log("train/lr", scheduler.get_last_lr()[0])

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
        self.log_dict(metrics, prog_bar=True, sync_dist=False)
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
        self.batches_in_epoch = state["batches_in_epoch"]
        self.skipped_nonfinite = state["skipped_nonfinite"]
        self._rng_to_restore = state["rng"]

    def on_train_start(self) -> None:
        """Restore RNG and data position here: after Lightning's own set-up has used the RNG."""
        rng = getattr(self, "_rng_to_restore", None)
        if rng is not None:
            torch.set_rng_state(rng["torch"])
            random.setstate(rng["python"])
            name, keys, pos, has_gauss, cached = rng["numpy"]
            np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
            self._rng_to_restore = None


def _plain_numpy_state() -> list:
    """numpy's RNG state as plain Python values, so checkpoints load with ``weights_only=True``."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]
