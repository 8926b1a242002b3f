"""Run by the DDP tests: fit a tiny model on several CPU processes, write per-rank checksums.

Usage:
  python ddp_param_check.py OUT_DIR [hydra overrides ...]
      fit through the compose API (tests/training/test_ddp.py; Lightning starts the 2 processes)
  torchrun ... ddp_param_check.py --train-py OUT_DIR [hydra overrides ...]
      the real ``train.py`` Hydra app, one process per rank (tests/training/test_multinode.py)

Each rank writes OUT_DIR/rank<R>.json: the sha256 of all its parameters before fitting (its own
initialisation, before DDP broadcasts rank 0's) and after, its global step, node rank and the
updates it made in each training phase.
"""

from __future__ import annotations

import functools
import hashlib
import json
import sys
from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf

from empdg.config import compose
from empdg.data.datamodule import DialogueDataModule
from empdg.training.run import build_module, build_trainer


def checksum(module: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, param in sorted(module.named_parameters()):
        digest.update(name.encode())
        digest.update(param.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class RankReport(pl.Callback):
    """Each rank's view of the fit, written to OUT_DIR/rank<R>.json when it ends."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.before: str | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":  # before the strategy wraps the model (DDP would copy rank 0's weights)
            self.before = checksum(pl_module)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        phases = getattr(pl_module, "phases", None)
        result = {
            "rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "num_nodes": trainer.num_nodes,
            "node_rank": trainer.node_rank,
            "cluster_environment": type(trainer.strategy.cluster_environment).__name__,
            "logger": type(trainer.logger).__name__ if trainer.logger is not None else None,
            "global_step": trainer.global_step,
            "phases_done": dict(phases.done) if phases is not None else {},
            "phases_budget": dict(phases.budgets) if phases is not None else {},
            "before": self.before,
            "after": checksum(pl_module),
        }
        path = self.out_dir / f"rank{trainer.global_rank}.json"
        path.write_text(json.dumps(result), encoding="utf-8")


def fit_with_compose(out_dir: Path, overrides: list[str]) -> None:
    cfg = compose("train", overrides)
    torch.manual_seed(int(cfg.seed))
    datamodule = DialogueDataModule(OmegaConf.to_container(cfg.data, resolve=True), seed=int(cfg.seed))
    datamodule.prepare_data()
    datamodule.setup("fit")
    module = build_module(cfg, datamodule)
    trainer = build_trainer(cfg, None, [RankReport(out_dir)], out_dir)
    trainer.fit(module, datamodule=datamodule)


def run_train_py(out_dir: Path, overrides: list[str]) -> None:
    """``train.py`` itself (Hydra's app, run folder, logger), with RankReport among its callbacks."""
    import empdg.commands.train as train_command
    import empdg.training.run as training_run

    # the command imports run_training when it runs (after its settings checks): patch it where it lives
    training_run.run_training = functools.partial(training_run.run_training, extra_callbacks=[RankReport(out_dir)])
    sys.argv = [sys.argv[0], *overrides]
    train_command.main()


def main() -> None:
    if sys.argv[1] == "--train-py":
        run_train_py(Path(sys.argv[2]), sys.argv[3:])
    else:
        fit_with_compose(Path(sys.argv[1]), sys.argv[2:])


if __name__ == "__main__":
    main()
