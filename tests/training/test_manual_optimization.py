"""How the module drives its optimizers: the phase table, toggled optimizers, clipping inside the step."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf

from empdg.data.corpus_metrics import CorpusStatistics, ScoredExample
from empdg.data.datamodule import DialogueDataModule
from empdg.training.module import EmpDGModule
from empdg.training.phases import PHASES
from empdg.training.run import build_module, build_trainer

ALL_PHASES = (
    "training.phases.generator_pretrain=2",
    "training.phases.critic_pretrain=1",
    "training.phases.adversarial=1",
    "adversarial.n_critic=1",
    "adversarial.g_steps=1",
    "trainer.val_check_interval=1000",
)


def build(cfg) -> tuple[DialogueDataModule, EmpDGModule]:
    datamodule = DialogueDataModule(OmegaConf.to_container(cfg.data, resolve=True), seed=int(cfg.seed))
    datamodule.setup("fit")
    return datamodule, build_module(cfg, datamodule)


class GradientsAtStep(pl.Callback):
    """After each optimizer step: the norm of the gradients it used, and which other parameters had one."""

    def __init__(self) -> None:
        self.norms: dict[str, list[float]] = {"G": [], "D": []}
        self.foreign_grads: list[str] = []

    def on_train_start(self, trainer, pl_module) -> None:
        parts = {"G": pl_module.generator, "D": pl_module.critics}
        for (name, optimizer), other in zip(zip("GD", trainer.optimizers), ("D", "G")):

            def after_step(opt, args, kwargs, name=name, other=other):
                grads = [p.grad for group in opt.param_groups for p in group["params"] if p.grad is not None]
                self.norms[name].append(float(torch.nn.utils.get_total_norm(grads)))
                if any(p.grad is not None for p in parts[other].parameters()):
                    self.foreign_grads.append(name)

            optimizer.register_step_post_hook(after_step)


def fit(cfg, callback: pl.Callback) -> tuple[pl.Trainer, EmpDGModule]:
    pl.seed_everything(int(cfg.seed), verbose=False)
    datamodule, module = build(cfg)
    trainer = build_trainer(cfg, None, [callback], cfg.paths.output_dir)
    trainer.fit(module, datamodule=datamodule)
    return trainer, module


def test_every_phase_has_a_step_in_the_table(compose_train):
    _, module = build(compose_train())
    assert list(module.phase_steps()) == list(PHASES)


def test_each_update_computes_gradients_for_its_own_optimizer_only(compose_train):
    probe = GradientsAtStep()
    _, module = fit(compose_train(*ALL_PHASES), probe)
    assert len(probe.norms["G"]) == 3 and len(probe.norms["D"]) == 2  # 2 + 1 generator, 1 + 1 critic updates
    assert probe.foreign_grads == []  # the critics judge the generator's update, the generator stays frozen for theirs
    assert all(p.requires_grad for p in module.parameters())  # and every switch is put back


@pytest.mark.parametrize("clip", [1e-3, None])
def test_generator_gradients_are_clipped_inside_the_step_and_the_raw_norm_is_logged(compose_train, clip):
    probe = GradientsAtStep()
    trainer, _ = fit(
        compose_train(*ALL_PHASES, f"training.gradient_clip_val={'null' if clip is None else clip}"), probe
    )
    logged = float(trainer.callback_metrics["train/g_grad_norm"])  # the last generator update's, before clipping
    used = probe.norms["G"][-1]  # what Adam stepped with
    if clip is None:
        assert used == pytest.approx(logged, rel=1e-6)
    else:
        assert logged > 10 * clip
        assert all(norm <= clip * (1 + 1e-4) for norm in probe.norms["G"])
    assert max(probe.norms["D"]) > 10 * 1e-3  # the critics are never clipped


def test_runs_stored_with_the_critic_switches_in_the_model_group_still_load(compose_train):
    _, module = build(compose_train())
    hparams = {k: (dict(v) if isinstance(v, dict) else v) for k, v in module.hparams.items()}
    del hparams["config_version"]  # stored before the key existed: version 1, migrated on load
    adversarial = {k: v for k, v in hparams["adversarial"].items() if k not in ("critics", "w_adv")}
    old = EmpDGModule(
        **{**hparams, "model": {**hparams["model"], "semantic_critic": True, "emotion_critic": False},
           "adversarial": adversarial}
    )  # fmt: skip
    assert set(old.critics) == {"semantic"}
    assert "semantic_critic" not in old.hparams["model"] and old.hparams["adversarial"]["critics"] == ["semantic"]


def test_validation_perplexity_is_evaluations_perplexity(compose_train):
    _, module = build(compose_train())
    module.val_metrics.perplexity.update(torch.tensor(8.25), torch.tensor(17))
    examples = [ScoredExample("a", nll_sum=2.0, n_tokens=4), ScoredExample("b", nll_sum=6.25, n_tokens=13)]
    assert float(module.val_metrics.perplexity.compute()) == CorpusStatistics(examples).point(["ppl"])["ppl"]


def test_clipping_sees_unscaled_gradients_under_fp16_mixed_precision(compose_train):
    """Clipping in the training code would clip the loss-scaled gradients (Lightning issue #18089)."""
    from pytorch_lightning.plugins.precision import MixedPrecision

    clip, scale = 1e-3, 2.0**16
    cfg = compose_train(
        "adversarial=none", "training.phases.generator_pretrain=3", f"training.gradient_clip_val={clip}"
    )
    probe = GradientsAtStep()
    pl.seed_everything(int(cfg.seed), verbose=False)
    datamodule, module = build(cfg)
    scaler = torch.amp.GradScaler("cpu", init_scale=scale)
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, plugins=[MixedPrecision("16-mixed", "cpu", scaler)], max_epochs=-1,
        logger=False, callbacks=[probe], enable_progress_bar=False, enable_checkpointing=False,
        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0, use_distributed_sampler=False,
    )  # fmt: skip
    trainer.fit(module, datamodule=datamodule)
    assert probe.norms["G"], "no step was taken"  # (a step with inf gradients is skipped by the scaler)
    assert all(norm == pytest.approx(clip, rel=1e-3) for norm in probe.norms["G"])  # not clip / scale
    assert float(trainer.callback_metrics["train/g_grad_norm"]) < scale * clip  # logged unscaled
