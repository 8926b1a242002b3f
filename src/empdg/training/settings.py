"""Training's settings checks: every impossible setting of a run named at once, before any data is read.

Light on purpose (no Lightning, no data code): ``train.py`` runs these before it imports the training job, so
a mistake costs a second or two rather than the seconds Lightning's import takes, and the sweep checks its
base settings with them before the study is opened.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from empdg.config.schema import AdversarialConfig, InvalidSettings, OptimConfig, TrainingConfig, run_problems, typed
from empdg.errors import is_number, seed_problems, user_errors_from, whole_problems
from empdg.models.registry import model_settings
from empdg.tracking.logger_settings import logger_problems


def ddp_problems(trainer: DictConfig) -> list[str]:
    """``trainer=ddp`` on a machine without a GPU: ``devices=auto`` would start one process, which nobody wants."""
    if "ddp" not in str(trainer.get("strategy", "")) or str(trainer.get("devices")) != "auto":
        return []
    accelerator = str(trainer.get("accelerator", "auto"))
    if int(trainer.get("num_nodes") or 1) > 1 or accelerator not in ("auto", "cpu"):
        return []  # one process per machine under a launcher is a real multi-node run
    if accelerator == "auto" and torch.cuda.is_available():
        return []
    found = "with trainer.accelerator=cpu" if accelerator == "cpu" else "found no GPU, and"
    return [
        f"trainer=ddp {found} trainer.devices=auto would start a single process; for CPU processes "
        "use trainer=ddp trainer.accelerator=cpu trainer.devices=2 (or trainer=cpu for one)"
    ]


def checkpoint_problems(checkpoint: DictConfig) -> list[str]:
    """``callbacks.checkpoint``'s numbers and mode, named as the user wrote them (Lightning's own errors would come
    after the data is read, naming ``ModelCheckpoint``'s arguments)."""
    found = []
    if checkpoint.mode not in ("min", "max"):
        found.append(f"callbacks.checkpoint.mode={checkpoint.mode!r}: choose min or max")
    found += whole_problems("callbacks.checkpoint.save_top_k", checkpoint.save_top_k, -1, " (-1: keep all)")
    every = checkpoint.every_n_train_steps
    return found + whole_problems("callbacks.checkpoint.every_n_train_steps", every, 0, ", or null", allow_null=True)


def trainer_problems(trainer: DictConfig) -> list[str]:
    """``trainer.val_check_interval`` <= 0, which Lightning takes and then divides by at the first update; the
    rest of its rules (a whole number without ``check_val_every_n_epoch``) are Lightning's, named by
    :func:`empdg.training.run.lightning_settings` when the trainer is built."""
    interval = trainer.get("val_check_interval")
    if is_number(interval) and interval <= 0:
        return [f"trainer.val_check_interval={interval!r} must be > 0 (updates between validations)"]
    return []


@user_errors_from()  # its ValueErrors are the user's: `error: ...`, exit 2
def validate_config(cfg: DictConfig) -> None:
    """Impossible settings stop here, before any data is read or a model is built.

    Each group's own rules live in its schema (empdg.config.schema); building the typed objects
    runs them. What needs several groups at once is checked here.
    """
    problems = []
    sections = {}
    for section, schema in (("training", TrainingConfig), ("adversarial", AdversarialConfig), ("optim", OptimConfig)):
        try:
            sections[section] = typed(schema, cfg[section], section)
        except InvalidSettings as error:
            problems += error.problems
        except ValueError as error:  # an unknown key added with `+` or a wrong type
            problems.append(str(error))
    data_schema = OmegaConf.get_type(cfg.data)  # the schema a data option names in its defaults list
    if dataclasses.is_dataclass(data_schema):
        try:
            typed(data_schema, cfg.data, "data")
        except ValueError as error:
            problems.append(str(error))
    if "training" in sections and "adversarial" in sections:
        problems += run_problems(sections["training"], sections["adversarial"])
    ablation = cfg.get("ablation") or {}
    if ablation.get("needs_critics") and "adversarial" in sections and not sections["adversarial"].critic_names:
        problems.append(
            f"ablation={ablation.name} changes the critics, but this run trains none (adversarial.critics is "
            f"empty; model={cfg.model.name} trains without critics by default): add adversarial=empdg, or choose "
            "another ablation"
        )
    model = cfg.model
    try:  # the generator's own settings checks, here before any data (else when the model is built)
        model_settings(OmegaConf.to_container(model, resolve=True))
    except ValueError as error:
        problems.append(str(error))
    problems += ddp_problems(cfg.trainer)
    if model.get("pretrained") is not None and (model.embeddings.path or model.embeddings.source):
        problems.append(
            f"model={model.name} reads its checkpoint's own word vectors: remove model.embeddings.path/source"
        )
    if model.embeddings.path and model.embeddings.source:
        problems.append("give one of model.embeddings.path (a GloVe-format file) or model.embeddings.source")
    if model.embeddings.source and model.embeddings.source != "glove-6b-50d":
        problems.append(f"model.embeddings.source={model.embeddings.source}: the packaged vectors are glove-6b-50d")
    elif model.embeddings.source and model.get("pretrained") is None and model.emb_dim != 50:
        problems.append(
            f"model.embeddings.source=glove-6b-50d has 50-d vectors but model.emb_dim={model.emb_dim}: set "
            "model.emb_dim=50 (projected to model.hidden_dim)"
        )
    if model.copy and cfg.data.max_context_len < 2:
        problems.append("model.copy=true needs context tokens (data.max_context_len >= 2)")
    if (model.embeddings.path or model.embeddings.source) and model.tie_embeddings and model.embeddings.freeze:
        problems.append("model.embeddings.freeze=true with model.tie_embeddings=true would freeze the output layer")
    if cfg.ckpt_path and not Path(cfg.ckpt_path).exists():
        problems.append(f"ckpt_path={cfg.ckpt_path} does not exist")
    if model.init_from and not Path(model.init_from).exists():
        problems.append(f"model.init_from={model.init_from} does not exist")
    problems += seed_problems(cfg.get("seed"))
    problems += checkpoint_problems(cfg.callbacks.checkpoint) + trainer_problems(cfg.trainer)
    problems += logger_problems(cfg.logger)
    progress_every = (cfg.callbacks.get("progress") or {}).get("every_n_steps", 0)
    if progress_every is not None and int(progress_every) < 0:
        problems.append(f"callbacks.progress.every_n_steps={progress_every} must be >= 0 (0 disables)")
    if problems:
        raise ValueError("invalid configuration:\n  - " + "\n  - ".join(problems))
