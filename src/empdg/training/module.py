"""The LightningModule that trains a generator, with or without critics, by manual optimization.

Manual optimization: the adversarial phases step two optimizers (generator, critics) in a custom
order, so ``training_step`` only dispatches the current phase to its step method (``phase_steps``).
This file holds what every phase shares: building the parts, the optimizers, the generator's MLE
loss and update, the non-finite guard, validation. Elsewhere:

- the critic and adversarial generator updates: training/adversarial_steps.py (a mixin of this class),
  their objectives: training/adversarial.py;
- exact resume (counters, RNG states): training/resume_state.py;
- validation metrics and the critic report: training/validation.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerFn
from torch import Tensor

from empdg.config.migration import CONFIG_VERSION, migrate_hparams
from empdg.config.schema import AdversarialConfig, OptimConfig, TrainingConfig, typed
from empdg.models.base import GeneratorOutput
from empdg.models.decoding import greedy_decode, ids_to_text
from empdg.models.inference import InferenceBundle, critic_vocab_weights
from empdg.training.adversarial import AdversarialGame, build_critics
from empdg.training.adversarial_steps import AdversarialSteps
from empdg.training.losses import emotion_cross_entropy, sequence_nll
from empdg.training.phases import PHASES, PhaseSchedule
from empdg.training.resume_state import ExactResume, TrainingCounters
from empdg.training.schedules import build_scheduler
from empdg.training.validation import CriticReportCollector, ValidationMeaning, ValidationMetrics

#: the critics' Adam betas: WGAN-GP's (Gulrajani et al. 2017), a low beta1 for a target that moves every update
CRITIC_BETAS = (0.5, 0.9)


class NonFiniteLossError(RuntimeError):
    pass


class EmpDGModule(AdversarialSteps, pl.LightningModule):
    def __init__(
        self,
        model: Mapping[str, Any],
        optim: Mapping[str, Any],
        training: Mapping[str, Any],
        vocab_tokens: list[str],
        adversarial: Mapping[str, Any] | None = None,
        vocab_spec: Mapping[str, Any] | None = None,
        config_version: int = 1,
    ) -> None:
        super().__init__()
        # a checkpoint stored before config_version existed is version 1: rewritten to today's keys
        current = migrate_hparams({"model": model, "adversarial": adversarial, "config_version": config_version})
        model, adversarial = current["model"], current["adversarial"]
        self.save_hyperparameters(
            {
                "model": model,
                "optim": dict(optim),
                "training": dict(training),
                "vocab_tokens": list(vocab_tokens),
                "adversarial": adversarial,
                "vocab_spec": dict(vocab_spec) if vocab_spec else None,  # a pretrained model's tokenizer
                "config_version": CONFIG_VERSION,
            },
            logger=False,
        )
        self.automatic_optimization = False
        # what inference loads too (a plain object: the state_dict keeps its generator.* and critics.* keys)
        self.bundle = InferenceBundle.build(model, vocab_tokens, vocab_spec)
        self.vocab, self.generator = self.bundle.vocab, self.bundle.generator
        self.generator_config = self.generator.settings  # the model's typed settings (its own dataclass)
        self.embedding_coverage: float | None = None  # share of the vocabulary with a pretrained vector (run.py)
        self.optim_cfg = typed(OptimConfig, optim, "optim")
        self.training_cfg = typed(TrainingConfig, training, "training")
        self.adv = typed(AdversarialConfig, adversarial, "adversarial")
        self.critics = build_critics(self.adv, self.generator.sizes.emb_dim, self.generator.sizes.hidden_dim)
        self.phases = PhaseSchedule(self.training_cfg.budgets(with_critics=bool(self.critics)))
        emotion_vocab, match_vocab = critic_vocab_weights(self.vocab, self.adv.critic.word_match)
        self.register_buffer("emotion_vocab", emotion_vocab, persistent=False)
        if match_vocab is not None:
            self.register_buffer("match_vocab", match_vocab, persistent=False)
        else:
            self.match_vocab = None
        self.game = AdversarialGame(
            self.generator, self.critics, self.adv, lambda: self.emotion_vocab, lambda: self.match_vocab
        )
        self.bundle.critics = self.game.panel if self.critics else None  # scores as inference's critics do
        self.counters = TrainingCounters()
        self.resume = ExactResume(self.phases, self.counters)
        self.val_metrics = ValidationMetrics(self.generator.sizes.num_emotions, len(self.vocab), self.vocab.metric_name)
        self.report = CriticReportCollector()
        # the metrics that read meaning (training.val_meaning), set by run.py on rank 0 alone: they score its
        # greedy replies, as val/greedy_* do (never saved: the models are the registry package's)
        self.val_meaning: ValidationMeaning | None = None
        self.critic_reports: list[dict[str, float]] = []  # every validation's report (critic_report.md)
        self.wasserstein_history: list[dict[str, float]] = []  # every critic update's estimates (the plot)
        self.step_metrics: dict[str, float] = {}  # this training step's values (callbacks and tests read them)
        self.last_grad_norm: Tensor | None = None  # of the optimizer stepped last (on_before_optimizer_step)

    # -- optimizers ------------------------------------------------------------------------
    def configure_optimizers(self):
        cfg = self.optim_cfg
        generator_opt = torch.optim.Adam(
            self.generator.parameters(), lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay
        )
        optimizers = [generator_opt]
        if self.critics:
            optimizers.append(torch.optim.Adam(self.critics.parameters(), lr=self.adv.critic_lr, betas=CRITIC_BETAS))
        scheduler = build_scheduler(generator_opt, cfg, self.generator.sizes.hidden_dim)
        if scheduler is None:
            return optimizers
        return optimizers, [{"scheduler": scheduler, "interval": "step"}]

    def generator_optimizer(self):
        optimizers = self.optimizers()
        return optimizers[0] if isinstance(optimizers, list) else optimizers

    def critic_optimizer(self):
        return self.optimizers()[1]

    def _generator_scheduler(self):
        schedulers = self.lr_schedulers()
        if isinstance(schedulers, list):
            return schedulers[0] if schedulers else None
        return schedulers

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Measure the gradient norm, then clip the generator's, inside ``optimizer.step()``.

        Lightning calls this after mixed precision has unscaled the gradients: clipping before the
        step, in the training code, would clip the scaled ones.
        """
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        self.last_grad_norm = torch.nn.utils.get_total_norm(grads)
        if optimizer is not self.trainer.optimizers[0]:
            return
        self.log("train/g_grad_norm", self.last_grad_norm)
        clip = self.training_cfg.gradient_clip_val
        if clip:
            self.clip_gradients(optimizer, gradient_clip_val=clip, gradient_clip_algorithm="norm")

    # -- losses ----------------------------------------------------------------------------
    def generator_losses(self, batch: dict, out: GeneratorOutput | None = None) -> dict[str, Tensor]:
        """MLE pieces of the generator objective for one batch (teacher forcing)."""
        out = self.generator(batch) if out is None else out
        target = batch["target_ext_ids"] if self.generator.sizes.copy else batch["target_ids"]
        seq = sequence_nll(out.log_probs, target, self.training_cfg.label_smoothing, len(self.vocab))
        emotion_ce = emotion_cross_entropy(out.encoded.emotion_logits, batch["emotion_label"])
        loss = seq.loss + self.training_cfg.emotion_loss_weight * emotion_ce
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
        if self.training_cfg.on_nonfinite == "skip":
            self.counters.skipped_nonfinite += 1
            self.log("train/skipped_nonfinite", float(self.counters.skipped_nonfinite))
            return False
        raise NonFiniteLossError(
            f"non-finite {where}; lower the learning rate, enable gradient clipping, or set "
            "training.on_nonfinite=skip to skip such updates"
        )

    # -- training --------------------------------------------------------------------------
    def phase_steps(self) -> dict[str, Callable[[dict], None]]:
        """Each phase and the method that trains one batch of it."""
        return {
            "generator_pretrain": self.train_generator_pretrain,
            "critic_pretrain": self.train_critic_pretrain,  # AdversarialSteps
            "adversarial": self.train_adversarial,  # AdversarialSteps
        }

    def training_step(self, batch: dict, batch_idx: int) -> None:
        self.step_metrics = {}
        self.counters.batches_in_epoch = batch_idx + 1
        phase = self.phases.current
        if phase is None:
            self.trainer.should_stop = True
            return
        self.phase_steps()[phase](batch)
        self.log("train/phase", float(PHASES.index(phase)))
        if self.phases.current is None:
            self.trainer.should_stop = True

    def train_generator_pretrain(self, batch: dict) -> None:
        accumulate = self.training_cfg.accumulate_grad_batches
        optimizer = self.generator_optimizer()
        with self.toggled_optimizer(optimizer):
            losses = self.generator_losses(batch)
            if not self.check_finite("train/loss", losses["loss"].detach()):
                optimizer.zero_grad()
                self.counters.micro_step = 0
                return
            self.manual_backward(losses["loss"] / accumulate)
            self.counters.micro_step += 1
            if self.counters.micro_step % accumulate == 0:
                self.counters.micro_step = 0
                self.generator_update(optimizer)
                self.phases.advance("generator_pretrain")
        self.log_mle(losses, batch)

    def generator_update(self, optimizer) -> None:
        """Step (measured and clipped in ``on_before_optimizer_step``), zero, and advance the schedule."""
        optimizer.step()
        optimizer.zero_grad()
        scheduler = self._generator_scheduler()
        if scheduler is not None:
            scheduler.step()
            self.log("train/lr", scheduler.get_last_lr()[0])

    def log_mle(self, losses: dict[str, Tensor], batch: dict) -> None:
        values = {
            "train/loss": losses["loss"].detach(),
            "train/nll": losses["nll"],
            "train/emotion_ce": losses["emotion_ce"].detach(),
        }
        self.log_dict(values, prog_bar=True, batch_size=batch["target_ids"].shape[0])
        self.step_metrics.update({k: float(v) for k, v in values.items()})

    # -- validation ------------------------------------------------------------------------
    def validation_step(self, batch: dict, batch_idx: int) -> None:
        out = self.generator(batch)
        self.val_metrics.update(self.generator_losses(batch, out), out, batch)
        if batch_idx < self.adv.report_batches and not self.trainer.sanity_checking:
            self.report.add(self.game, batch, out, self.vocab)

    def on_validation_epoch_end(self) -> None:
        metrics = self.val_metrics.compute(with_emotion_acc=self.generator.sizes.has_emotion_classifier)
        # the torchmetrics states are already reduced across ranks; sync_dist only silences the check
        self.log_dict(metrics, prog_bar=True, sync_dist=True)
        self.val_metrics.reset()
        replies, example_ids = self.report.replies, self.report.example_ids  # finish() starts over
        report = self.report.finish(self.trainer, self.device)
        if report is not None:
            self.log_dict(report, sync_dist=False, rank_zero_only=True)
            self.critic_reports.append({"step": float(self.global_step), **report})
        if self.val_meaning is not None and replies:
            final = self.trainer.state.fn == TrainerFn.VALIDATING  # run.py's trainer.validate after fit
            meaning = self.val_meaning.measure(example_ids, replies, final)
            self.log_dict(meaning, sync_dist=False, rank_zero_only=True)

    # -- generation ------------------------------------------------------------------------
    def generate_replies(self, batch: dict, max_len: int = 30) -> list[str]:
        ids = greedy_decode(self.generator, batch, max_len=max_len)
        return [ids_to_text(row, self.vocab, oovs) for row, oovs in zip(ids.tolist(), batch["oovs"])]

    # -- exact resume (training/resume_state.py) -------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.resume.save(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.resume.load(checkpoint, getattr(self._trainer, "datamodule", None) if self._trainer else None)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self.resume.before_batch(self.trainer)
