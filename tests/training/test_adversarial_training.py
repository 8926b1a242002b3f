"""The adversarial game in the LightningModule: gradient path, schedule, ablations, resume."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf

from empdg.data.datamodule import DialogueDataModule
from empdg.data.dataset import collate
from empdg.training.module import EmpDGModule
from empdg.training.run import build_module, build_trainer, run_training

ABLATIONS = ["none", "no_emotion_encoder", "no_feedback", "vanilla_gan", "semantic_critic_only", "woG"]


def build(cfg) -> tuple[DialogueDataModule, EmpDGModule]:
    datamodule = DialogueDataModule(OmegaConf.to_container(cfg.data, resolve=True), seed=int(cfg.seed))
    datamodule.setup("fit")
    return datamodule, build_module(cfg, datamodule)


def first_batch(datamodule: DialogueDataModule, n: int = 8) -> dict:
    items = [datamodule.datasets["train"][i] for i in range(n)]
    batch = collate(items)
    assert batch["has_feedback"].any()
    return batch


@pytest.mark.parametrize("estimator", ["soft", "gumbel"])
def test_critic_gradient_reaches_generator_decoder(compose_train, estimator):
    """With only the adversarial term, the decoder gets a non-zero gradient and a step changes it."""
    torch.manual_seed(0)
    cfg = compose_train(
        f"adversarial.estimator={estimator}",
        "adversarial.mle_weight=0",
        "training.emotion_loss_weight=0",
        "adversarial.w_adv=abs:0.01",
    )
    datamodule, module = build(cfg)
    batch = first_batch(datamodule)
    decoder = module.generator.decoder
    before = [p.detach().clone() for p in decoder.parameters()]

    loss, parts = module.adversarial_generator_loss(batch)
    assert parts["g_adv"].requires_grad
    loss.backward()
    grad_norm = sum(p.grad.norm() for p in decoder.parameters() if p.grad is not None)
    assert grad_norm > 0
    torch.optim.SGD(module.generator.parameters(), lr=1.0).step()
    assert any(not torch.equal(b, p) for b, p in zip(before, decoder.parameters()))


@pytest.mark.parametrize(("estimator", "w_adv"), [("soft", "abs:0"), ("gumbel", "abs:0"), ("gumbel", "0")])
def test_critic_gradient_is_zero_without_adversarial_weight(compose_train, estimator, w_adv):
    cfg = compose_train(
        f"adversarial.estimator={estimator}",
        "adversarial.mle_weight=0",
        "training.emotion_loss_weight=0",
        f"adversarial.w_adv={w_adv}",
    )
    datamodule, module = build(cfg)
    loss, _ = module.adversarial_generator_loss(first_batch(datamodule))
    loss.backward()
    grads = [p.grad for p in module.generator.decoder.parameters() if p.grad is not None]
    assert all(torch.count_nonzero(g) == 0 for g in grads)


def test_critic_update_trains_critics_not_generator(compose_train):
    cfg = compose_train()
    datamodule, module = build(cfg)
    total, logs = module.critic_losses(first_batch(datamodule))
    total.backward()
    assert all(p.grad is None for p in module.generator.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.critics.parameters())
    assert {"wgan/d_sem_wdist", "wgan/d_emo_wdist", "wgan/gp_sem", "wgan/gp_emo"} <= set(logs)


def test_critics_skip_batches_without_feedback(compose_train):
    datamodule, module = build(compose_train())
    items = [it for it in datamodule.datasets["train"].items if not it.has_feedback][:4]
    assert module.critic_losses(collate(items)) is None


class StepRecorder(pl.Callback):
    """Records which optimizer stepped, in order, and the losses logged at each batch."""

    def __init__(self) -> None:
        self.steps: list[str] = []
        self.losses: list[dict[str, float]] = []

    def on_train_start(self, trainer, pl_module) -> None:
        for name, optimizer in zip(("G", "D"), trainer.optimizers):
            optimizer.register_step_post_hook(lambda *_, name=name: self.steps.append(name))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        keys = ("train/loss", "wgan/d_loss", "wgan/g_loss")
        self.losses.append({k: v for k, v in pl_module.step_metrics.items() if k in keys})


def fit(cfg, callbacks=(), ckpt_path=None) -> StepRecorder:
    pl.seed_everything(int(cfg.seed), verbose=False)
    datamodule, module = build(cfg)
    recorder = StepRecorder()
    output_dir = cfg.paths.output_dir
    trainer = build_trainer(cfg, None, [recorder, *callbacks], output_dir)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    return recorder


def test_schedule_steps_n_critic_then_g_steps(compose_train):
    cfg = compose_train(
        "training.phases.generator_pretrain=0",
        "training.phases.critic_pretrain=0",
        "training.phases.adversarial=2",
        "adversarial.n_critic=3",
        "adversarial.g_steps=2",
    )
    recorder = fit(cfg)
    assert recorder.steps == ["D", "D", "D", "G", "G"] * 2


def test_phases_run_in_order_with_their_budgets(compose_train):
    cfg = compose_train(
        "training.phases.generator_pretrain=3",
        "training.phases.critic_pretrain=2",
        "training.phases.adversarial=1",
        "adversarial.n_critic=1",
        "adversarial.g_steps=1",
    )
    assert fit(cfg).steps == ["G"] * 3 + ["D"] * 2 + ["D", "G"]


@pytest.mark.parametrize("ablation", ABLATIONS)
def test_every_ablation_composes_and_runs(compose_train, ablation):
    cfg = compose_train(
        f"ablation={ablation}",
        "training.phases.generator_pretrain=2",
        "training.phases.critic_pretrain=1",
        "training.phases.adversarial=1",
        "adversarial.n_critic=1",
        "adversarial.g_steps=1",
        "trainer.val_check_interval=4",
    )
    assert cfg.ablation.name == ablation
    metrics = run_training(cfg)
    assert torch.isfinite(torch.tensor(metrics["val/ppl"]))
    _, module = build(cfg)
    critics = set(module.critics)
    expected = {
        "semantic_critic_only": {"semantic"},
        "woG": {"semantic"},
    }.get(ablation, {"semantic", "emotion"})
    assert critics == expected
    if ablation == "no_feedback":
        assert all(c.feedback_lstm is None for c in module.critics.values())
    if ablation == "woG":
        assert module.generator_config.emotion_injection == "label_embedding"
    if ablation == "no_emotion_encoder":
        assert module.generator.emotion_encoder is None
    if ablation == "vanilla_gan":
        assert module.game.rule.name == "gan"


def test_resume_in_adversarial_phase_is_exact(compose_train, tmp_path):
    """Stop in the middle of the adversarial phase, resume, and get the uninterrupted losses."""
    common = [
        "training.phases.generator_pretrain=2",
        "training.phases.critic_pretrain=2",
        "adversarial.n_critic=2",
        "adversarial.g_steps=2",
        "adversarial.estimator=gumbel",
        "model.dropout=0.1",
        "trainer.val_check_interval=1000",
    ]
    full = fit(compose_train(*common, "training.phases.adversarial=3", run="full"))
    checkpoint = pl.callbacks.ModelCheckpoint(dirpath=str(tmp_path / "ckpt"), save_last=True, save_top_k=0)
    first = fit(compose_train(*common, "training.phases.adversarial=1", run="first"), [checkpoint])
    second = fit(
        compose_train(*common, "training.phases.adversarial=3", run="second"),
        ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"),
    )
    assert first.losses == full.losses[: len(first.losses)]
    resumed = full.losses[len(first.losses) :]
    assert len(second.losses) == len(resumed) > 0
    assert second.losses == resumed  # bit-identical: weights, optimizer states, RNG, data position


@pytest.mark.parametrize("model", ["empdg", "transformer", "emoprepend"])
def test_woG_gives_the_emoprepend_generator_whatever_the_model_choice(compose_train, model):
    cfg = compose_train(f"model={model}", "ablation=woG")
    assert cfg.model.emotion_injection == "label_embedding"
    assert not cfg.model.emotion_encoder and cfg.model.emotion_classifier
    assert list(cfg.adversarial.critics) == ["semantic"]
