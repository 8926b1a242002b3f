"""The training job behind ``train.py`` (and, later, every sweep trial)."""

from __future__ import annotations

import contextlib
import logging
import math
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities.exceptions import MisconfigurationException, SIGTERMException

from empdg.config.migration import CONFIG_VERSION, migrate_hparams
from empdg.data.builtin import builtin_model_notice
from empdg.data.datamodule import DialogueDataModule
from empdg.data.vocab import SubwordVocab
from empdg.data.word_vectors import load_packaged_glove, load_word_vectors
from empdg.errors import ConfigError, user_errors_from
from empdg.models.hf_pretrained import PretrainedGenerator, load_tokenizer_json
from empdg.tracking.resilient_logger import build_logger, describe_run, log_artifact, log_dataset
from empdg.tracking.run_record import checkpoint_run_folder, close_orphaned_run, record_training_run, run_tags
from empdg.training.callbacks import SampleGenerations, WassersteinPlot
from empdg.training.checkpoint import load_checkpoint_file, resolve_checkpoint_path
from empdg.training.critic_report import CriticReport
from empdg.training.interruption import Interruption, TrainingInterrupted
from empdg.training.log_hygiene import install_log_filters
from empdg.training.module import EmpDGModule
from empdg.training.progress import ProgressLog
from empdg.training.progress_bar import phase_progress_bar
from empdg.training.settings import validate_config
from empdg.training.throughput import TrainingThroughput
from empdg.training.validation import ValidationMeaning, val_meaning_on

log = logging.getLogger(__name__)


@user_errors_from()
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


@contextlib.contextmanager
def lightning_settings(section: str) -> Iterator[None]:
    """Lightning's refusal of a setting it checks itself (``trainer.precision=bogus``, ``trainer.devices=0``,
    an accelerator whose package is missing) as a user error naming the config section."""
    try:
        yield
    except (MisconfigurationException, ValueError, ModuleNotFoundError) as error:
        raise ConfigError(f"{section}: {error}") from error


@user_errors_from()  # its ValueErrors are the user's: `error: ...`, exit 2 (empdg.errors)
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
        vocab_spec=datamodule.vocab.spec(),
        config_version=CONFIG_VERSION,
    )
    generator = module.generator
    if cfg.model.embeddings.path or cfg.model.embeddings.source:
        if cfg.model.embeddings.source:
            vectors, found = load_packaged_glove(datamodule.vocab, cfg.model.emb_dim, cfg.seed)
        else:
            vectors, found = load_word_vectors(
                Path(cfg.model.embeddings.path), datamodule.vocab, cfg.model.emb_dim, cfg.seed
            )
        module.embedding_coverage = found / max(len(datamodule.vocab), 1)
        generator.word_embedding.weight.data.copy_(vectors)
        generator.word_embedding.weight.requires_grad_(not cfg.model.embeddings.freeze)
        log.info("pretrained vectors: %d of %d vocabulary words found", found, len(datamodule.vocab))
    if cfg.model.get("pretrained") is not None and cfg.model.embeddings.freeze:
        generator.freeze_word_embeddings()  # the checkpoint's own vectors
    if cfg.model.init_from:
        load_generator_weights(module, Path(cfg.model.init_from))
    return module


@user_errors_from()
def load_generator_weights(module: EmpDGModule, path: Path) -> None:
    """Initialise the generator from a checkpoint with the same vocabulary (weights only)."""
    path = resolve_checkpoint_path(path, "model.init_from")  # a run folder: its best checkpoint
    checkpoint = load_checkpoint_file(path, "model.init_from")
    tokens = checkpoint["hyper_parameters"]["vocab_tokens"]
    if tokens != module.vocab.tokens:
        raise ValueError(
            f"model.init_from={path} was trained with a different vocabulary; use the same data and data.vocab settings"
        )
    prefix = "generator."
    state = {k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
    module.generator.load_state_dict(state)


@user_errors_from()
def read_resume_checkpoint(path: Path) -> dict[str, Any]:
    """What a resume needs to know of ``ckpt_path`` before any data is read: loaded weights-only.

    A file holding anything but tensors and plain values is refused here, before Lightning opens it
    (and Lightning itself is told ``weights_only=True``, so nothing else can slip through).
    """
    checkpoint = load_checkpoint_file(path, "ckpt_path")
    return {
        "hyper_parameters": migrate_hparams(checkpoint["hyper_parameters"]),  # compared in today's keys
        "shapes": {k: tuple(v.shape) for k, v in checkpoint["state_dict"].items() if isinstance(v, torch.Tensor)},
    }


def _differences(stored: Any, current: Any, prefix: str) -> list[str]:
    if isinstance(stored, dict) and isinstance(current, dict):
        found = []
        for key in sorted(set(stored) | set(current), key=str):
            found += _differences(stored.get(key), current.get(key), f"{prefix}.{key}")
        return found
    return [] if stored == current else [f"{prefix}: checkpoint {stored!r}, this run {current!r}"]


def _vocabulary_difference(stored: list[str], current: list[str]) -> str | None:
    if stored == current:
        return None
    first = next((i for i, (a, b) in enumerate(zip(stored, current)) if a != b), min(len(stored), len(current)))
    at = f"first difference at index {first}: {stored[first] if first < len(stored) else '<end>'!r} vs "
    at += repr(current[first] if first < len(current) else "<end>")
    return f"vocabulary: checkpoint {len(stored)} tokens, this run {len(current)} ({at})"


@user_errors_from()
def check_resume_compatible(module: EmpDGModule, resume: dict[str, Any], path: Path) -> None:
    """Refuse, naming what differs, a checkpoint of another model type, size or vocabulary.

    Without this the resume would end in Lightning's raw ``state_dict`` size mismatch.
    """
    stored = resume["hyper_parameters"]
    current = dict(module.hparams)
    problems = []
    vocabulary = _vocabulary_difference(list(stored.get("vocab_tokens") or []), list(current["vocab_tokens"]))
    if vocabulary:
        problems.append(vocabulary + " -- use the same data and data.vocab settings as the checkpoint's run")
    model_diffs = [
        line
        for line in _differences(dict(stored.get("model") or {}), dict(current["model"]), "model")
        if not line.startswith(("model.init_from:", "model.embeddings."))  # where weights came from, not shapes
    ]
    critic_diffs = _differences(
        dict((stored.get("adversarial") or {}).get("critic") or {}),
        dict((current.get("adversarial") or {}).get("critic") or {}),
        "adversarial.critic",
    )
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    shapes = resume["shapes"]
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    resized = sorted(k for k in set(expected) & set(shapes) if expected[k] != shapes[k])
    weights_differ = bool(missing or unexpected or resized)
    name_differs = (stored.get("model") or {}).get("name") != current["model"].get("name")
    if weights_differ or name_differs:
        problems += model_diffs + critic_diffs
    if weights_differ:
        summary = [f"{len(missing)} missing", f"{len(unexpected)} unexpected", f"{len(resized)} of another shape"]
        example = ""
        if resized:
            first = resized[0]
            example = f"; e.g. {first}: checkpoint {list(shapes[first])}, this run {list(expected[first])}"
        elif missing or unexpected:
            example = f"; e.g. {(missing or unexpected)[0]}"
        problems.append("weights: " + ", ".join(summary) + example)
    if not problems:
        return
    raise ValueError(
        f"ckpt_path={path} cannot be resumed by this run: it was trained with another model or vocabulary.\n  - "
        + "\n  - ".join(problems)
        + "\nResume with the configuration of the checkpoint's run (its config.yaml, beside checkpoints/), "
        "or, to start a new run from its generator weights, use model.init_from=PATH instead of ckpt_path "
        "(same vocabulary needed)."
    )


def build_trainer(cfg: DictConfig, logger, callbacks: list[pl.Callback], output_dir: Path) -> pl.Trainer:
    install_log_filters()  # also here, for trainers built without run_training (tests, tools); idempotent
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    with lightning_settings("trainer"):
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
    install_log_filters()
    validate_config(cfg)
    if cfg.ckpt_path:  # a run folder resumes from its last checkpoint; a FIFO or device is refused
        with user_errors_from():
            cfg.ckpt_path = str(resolve_checkpoint_path(cfg.ckpt_path, "ckpt_path", which="last"))
    resume = read_resume_checkpoint(Path(cfg.ckpt_path)) if cfg.ckpt_path else None
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    output_dir = resolve_output_dir(cfg)
    # the run folder's files and the tracking store are rank 0's: other DDP processes (other nodes,
    # started at the same moment by torchrun or srun) would race it (rank from the launcher's env)
    rank_zero = rank_zero_only.rank == 0
    if rank_zero:
        (output_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True), encoding="utf-8")
    # rank 0 alone scores its greedy replies (as val/greedy_*); decided before any data is read
    val_meaning = rank_zero and val_meaning_on(
        str(cfg.training.val_meaning).lower(), str(cfg.data.source), int(cfg.adversarial.report_batches)
    )

    data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    datamodule = DialogueDataModule(data_cfg, seed=int(cfg.seed), vocab=pretrained_vocab(cfg))
    datamodule.prepare_data()
    datamodule.setup("fit")
    if rank_zero:
        datamodule.vocab.save(output_dir / "vocab.json")
    module = build_module(cfg, datamodule)
    if val_meaning:
        module.val_meaning = ValidationMeaning.build(datamodule.prepared.examples, data_cfg.get("cache_dir"))
    if resume is not None:
        check_resume_compatible(module, resume, Path(cfg.ckpt_path))

    resumed = None
    if cfg.ckpt_path and rank_zero:  # before this run's record replaces the old one (resuming in place)
        previous = close_orphaned_run(checkpoint_run_folder(cfg.ckpt_path), cfg.logger.get("run_id"))
        resumed = f"resumed from {cfg.ckpt_path}" + (f" ({previous})" if previous else "")
    tags = run_tags(cfg, dataset=f"{cfg.data.name}:{datamodule.prepared.cache_path.stem}")
    logger = build_logger(cfg.logger, output_dir, tags) if rank_zero else None
    samples = SampleGenerations(int(cfg.training.sample_generations), int(cfg.training.sample_max_len))
    checkpoint_cfg = cfg.callbacks.checkpoint
    checkpoint = ModelCheckpoint(
        dirpath=str(output_dir / "checkpoints"),
        monitor=monitored_metric(checkpoint_cfg.monitor, datamodule.vocab),
        mode=checkpoint_cfg.mode,
        save_last=checkpoint_cfg.save_last,
        save_top_k=checkpoint_cfg.save_top_k,
        every_n_train_steps=checkpoint_cfg.every_n_train_steps,
        # "best" only means something when a metric is monitored; otherwise it is the latest one
        filename="best-{step}" if checkpoint_cfg.monitor else "step-{step}",
        auto_insert_metric_name=False,
    )
    interruption = Interruption(output_dir / "checkpoints" / "last.ckpt")
    callbacks = [
        checkpoint,
        interruption,
        samples,
        WassersteinPlot(output_dir),
        CriticReport(output_dir),
        TrainingThroughput(output_dir),
        *progress_callbacks(cfg),
        *(extra_callbacks or []),
    ]
    trainer = build_trainer(cfg, logger, callbacks, output_dir)
    if logger is not None and trainer.is_global_zero:
        # config_version: which keys these params are in (empdg.config.migration reads old runs' params)
        logger.log_hyperparams({**flatten(OmegaConf.to_container(cfg, resolve=True)), "config_version": CONFIG_VERSION})
        if module.embedding_coverage is not None:
            logger.log_hyperparams({"model.embeddings.coverage": round(module.embedding_coverage, 4)})
        log_artifact(logger, output_dir / "config.yaml")
        log_artifact(logger, output_dir / "vocab.json")
        cache = datamodule.prepared.cache_path  # `<source>-<hash>.json`: the hash of the examples trained on
        source = Path(cfg.data.root).expanduser().resolve() if cfg.data.get("root") else cache.resolve()
        log_dataset(logger, str(cfg.data.name), source, cache.stem.partition("-")[2])
        record_training_run(logger, output_dir)  # mlflow_run.json: evaluations link to this run (never fatal)
    # weights_only=True: Lightning's default defers to torch's, which an environment variable
    # (TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD) or an older torch turns into full unpickling
    with interruption.installed(trainer):
        try:
            trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path, weights_only=True)
            if trainer.interrupted:
                log.warning("training was interrupted")
            trainer.validate(module, datamodule=datamodule, verbose=False)  # every rank: it is collective
        except MisconfigurationException as error:  # a monitored metric validation never logs: known only now
            if "monitored key" not in str(error):
                raise
            raise ConfigError(f"callbacks.checkpoint.monitor={cfg.callbacks.checkpoint.monitor}: {error}") from error
        except SIGTERMException:  # Lightning's stop for SIGTERM (and ours for SIGINT): exit 0 unless turned
            if interruption.signum is None:
                raise
            stopped = interruption.stopped()
            if trainer.is_global_zero:
                print_stop(stopped, trainer.global_step, logger, output_dir, resumed)
            raise stopped from None
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    if trainer.is_global_zero and isinstance(module.generator, PretrainedGenerator):
        save_hugging_face_format(module, output_dir / "hf_model", logger)
    if trainer.is_global_zero:
        print_summary(metrics, logger, output_dir, checkpoint, samples, resumed)
        if notice := builtin_model_notice(data_cfg):  # after the replies it explains
            print("\n" + notice)
    return metrics


def pretrained_vocab(cfg: DictConfig) -> SubwordVocab | None:
    """A pretrained generator's own tokenizer as the vocabulary (None: build a word vocabulary from the data)."""
    pretrained = cfg.model.get("pretrained")
    if not pretrained:
        return None
    return SubwordVocab(load_tokenizer_json(str(pretrained)), str(cfg.data.get("normalization", "moel")))


def monitored_metric(monitor: str | None, vocab) -> str | None:
    """``val/ppl`` of a subword model is logged as ``val/subword_ppl``: monitor that instead."""
    if monitor not in ("val/ppl", "val/nll"):
        return monitor
    renamed = "val/" + vocab.metric_name(monitor.removeprefix("val/"))
    if renamed != monitor:
        log.info(
            "callbacks.checkpoint.monitor=%s: this model's perplexity is per %s, monitoring %s",
            monitor,
            vocab.unit,
            renamed,
        )
    return renamed


def save_hugging_face_format(module: EmpDGModule, folder: Path, logger) -> None:
    """The fine-tuned model as ``transformers`` loads it (safetensors + tokenizer), also logged to MLflow."""
    spec = module.vocab.spec() or {}
    module.generator.save_hf(folder, spec.get("tokenizer_json"))
    log.info("Hugging Face format: %s (AutoModel...from_pretrained loads it)", folder)
    for path in sorted(folder.iterdir()):
        log_artifact(logger, path, "hf_model")


def progress_callbacks(cfg: DictConfig) -> list[pl.Callback]:
    """The phase progress bar (with ``trainer.enable_progress_bar``) and the one-line progress log
    (``callbacks.progress``; by default only without a bar)."""
    progress = cfg.callbacks.get("progress") or {}
    every = int(progress.get("every_n_steps", 0) or 0)
    bar = bool(cfg.trainer.get("enable_progress_bar", True))
    callbacks: list[pl.Callback] = [phase_progress_bar()] if bar else []
    if every > 0 and (not bar or progress.get("with_progress_bar", False)):
        callbacks.append(ProgressLog(every))
    return callbacks


def print_stop(stopped: TrainingInterrupted, step: int, logger, output_dir: Path, resumed: str | None) -> None:
    name = signal.Signals(stopped.signum).name
    print(f"\n=== empdg run stopped by {name} at step {step} (exit status {stopped.code}) ===")
    if resumed:
        print(resumed)
    print(describe_run(logger, output_dir))
    if getattr(logger, "killed", False):
        print("  the MLflow run is marked KILLED")
    print(f"run folder: {output_dir}")
    if stopped.checkpoint is not None:
        print(f"checkpoint: {stopped.checkpoint}\nresume with: ckpt_path={stopped.checkpoint}")


def print_summary(
    metrics, logger, output_dir: Path, checkpoint: ModelCheckpoint, samples: SampleGenerations,
    resumed: str | None = None,
) -> None:  # fmt: skip
    shown = {k: v for k, v in metrics.items() if k.startswith("val/") and math.isfinite(v)}
    print("\n=== empdg run finished ===")
    if resumed:
        print(resumed)
    print("validation: " + ", ".join(f"{k}={v:.4g}" for k, v in sorted(shown.items())))
    print(describe_run(logger, output_dir))
    print(f"run folder: {output_dir}")
    if checkpoint.best_model_path:
        kind = "best" if checkpoint.monitor else "latest"
        print(f"{kind} checkpoint: {checkpoint.best_model_path}")
    if samples.last_text:
        print("\n" + samples.last_text)
