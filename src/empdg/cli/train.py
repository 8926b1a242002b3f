"""The training job behind ``train.py`` (and, later, every sweep trial)."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint

from empdg.data.datamodule import DialogueDataModule
from empdg.data.word_vectors import load_word_vectors
from empdg.tracking.mlflow_tracking import build_logger, describe_run, git_commit, log_artifact
from empdg.training.callbacks import SampleGenerations, WassersteinPlot
from empdg.training.module import EmpDGModule

log = logging.getLogger(__name__)


def resolve_output_dir(cfg: DictConfig) -> Path:
    """The run folder: ``paths.output_dir`` (Hydra's run dir unless overridden)."""
    try:
        value = cfg.paths.output_dir
    except Exception as error:  # ${hydra:...} outside a Hydra job (compose API, tests)
        raise ValueError(
            "paths.output_dir cannot be resolved outside a Hydra run; pass paths.output_dir=/some/dir"
        ) from error
    path = Path(value).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def validate_config(cfg: DictConfig) -> None:
    """Impossible combinations stop here, before any data is read or a model is built."""
    problems = []
    model = cfg.model
    if model.copy and cfg.data.max_context_len < 2:
        problems.append("model.copy=true needs context tokens (data.max_context_len >= 2)")
    if model.embeddings.path and model.tie_embeddings and model.embeddings.freeze:
        problems.append(
            "model.embeddings.freeze=true with model.tie_embeddings=true would freeze the output layer"
        )
    if cfg.training.accumulate_grad_batches < 1:
        problems.append("training.accumulate_grad_batches must be >= 1")
    if cfg.training.on_nonfinite not in ("error", "skip"):
        problems.append("training.on_nonfinite must be 'error' or 'skip'")
    if cfg.ckpt_path and not Path(cfg.ckpt_path).exists():
        problems.append(f"ckpt_path={cfg.ckpt_path} does not exist")
    if model.init_from and not Path(model.init_from).exists():
        problems.append(f"model.init_from={model.init_from} does not exist")
    if problems:
        raise ValueError("invalid configuration:\n  - " + "\n  - ".join(problems))


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def build_module(cfg: DictConfig, datamodule: DialogueDataModule) -> EmpDGModule:
    container = OmegaConf.to_container(cfg, resolve=True)
    module = EmpDGModule(
        model=container["model"],
        optim=container["optim"],
        training=container["training"],
        vocab_tokens=datamodule.vocab.tokens,
        adversarial=container["adversarial"],
    )
    generator = module.generator
    if cfg.model.embeddings.path:
        vectors, found = load_word_vectors(
            Path(cfg.model.embeddings.path), datamodule.vocab, cfg.model.emb_dim, cfg.seed
        )
        generator.embedding.weight.data.copy_(vectors)
        generator.embedding.weight.requires_grad_(not cfg.model.embeddings.freeze)
        log.info("pretrained vectors: %d of %d vocabulary words found", found, len(datamodule.vocab))
    if cfg.model.init_from:
        load_generator_weights(module, Path(cfg.model.init_from))
    return module


def load_generator_weights(module: EmpDGModule, path: Path) -> None:
    """Initialise the generator from a checkpoint with the same vocabulary (weights only)."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    tokens = checkpoint["hyper_parameters"]["vocab_tokens"]
    if tokens != module.vocab.tokens:
        raise ValueError(
            f"model.init_from={path} was trained with a different vocabulary; use the same data and data.vocab settings"
        )
    prefix = "generator."
    state = {k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
    module.generator.load_state_dict(state)


def build_trainer(cfg: DictConfig, logger, callbacks: list[pl.Callback], output_dir: Path) -> pl.Trainer:
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    return pl.Trainer(
        **trainer_cfg,
        max_epochs=-1,
        max_steps=-1,
        logger=logger if logger is not None else False,
        callbacks=callbacks,
        default_root_dir=str(output_dir),
        use_distributed_sampler=False,  # our batch sampler shards by rank itself
    )


def run_training(cfg: DictConfig, extra_callbacks: list[pl.Callback] | None = None) -> dict[str, float]:
    """Train one run; return the final validation metrics (what sweeps optimise)."""
    validate_config(cfg)
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    output_dir = resolve_output_dir(cfg)
    (output_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True), encoding="utf-8")

    datamodule = DialogueDataModule(OmegaConf.to_container(cfg.data, resolve=True), seed=int(cfg.seed))
    datamodule.prepare_data()
    datamodule.setup("fit")
    datamodule.vocab.save(output_dir / "vocab.json")
    module = build_module(cfg, datamodule)

    tags = {
        "git_commit": git_commit(Path(__file__).parent),
        "dataset": f"{cfg.data.name}:{datamodule.prepared.cache_path.stem}",
        "model": str(cfg.model.name),
        "ablation": str(cfg.ablation.name),
        "experiment": str(cfg.experiment_name),
    }
    logger = build_logger(cfg.logger, output_dir, tags)
    samples = SampleGenerations(int(cfg.training.sample_generations), int(cfg.training.sample_max_len))
    checkpoint_cfg = cfg.callbacks.checkpoint
    checkpoint = ModelCheckpoint(
        dirpath=str(output_dir / "checkpoints"),
        monitor=checkpoint_cfg.monitor,
        mode=checkpoint_cfg.mode,
        save_last=checkpoint_cfg.save_last,
        save_top_k=checkpoint_cfg.save_top_k,
        every_n_train_steps=checkpoint_cfg.every_n_train_steps,
        filename="best-{step}",
        auto_insert_metric_name=False,
    )
    callbacks = [checkpoint, samples, WassersteinPlot(output_dir), *(extra_callbacks or [])]
    trainer = build_trainer(cfg, logger, callbacks, output_dir)
    if logger is not None and trainer.is_global_zero:
        logger.log_hyperparams(flatten(OmegaConf.to_container(cfg, resolve=True)))
        log_artifact(logger, output_dir / "config.yaml")
        log_artifact(logger, output_dir / "vocab.json")
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    if trainer.interrupted:
        log.warning("training was interrupted")
    trainer.validate(module, datamodule=datamodule, verbose=False)  # every rank: it is collective
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    if trainer.is_global_zero:
        print_summary(metrics, logger, output_dir, checkpoint, samples)
    return metrics


def print_summary(
    metrics, logger, output_dir: Path, checkpoint: ModelCheckpoint, samples: SampleGenerations
) -> None:
    shown = {k: v for k, v in metrics.items() if k.startswith("val/") and math.isfinite(v)}
    print("\n=== empdg run finished ===")
    print("validation: " + ", ".join(f"{k}={v:.4g}" for k, v in sorted(shown.items())))
    print(describe_run(logger, output_dir))
    print(f"run folder: {output_dir}")
    if checkpoint.best_model_path:
        print(f"best checkpoint: {checkpoint.best_model_path}")
    if samples.last_text:
        print("\n" + samples.last_text)
