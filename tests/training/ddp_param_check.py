"""Run by tests/training/test_ddp.py: fit a tiny model with DDP on 2 CPU processes, write per-rank checksums.

Usage: python ddp_param_check.py OUT_DIR [hydra overrides ...]
Each rank writes OUT_DIR/rank<R>.json with the sha256 of all its parameters before and after fitting.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from empdg.data.datamodule import DialogueDataModule
from empdg.training.run import build_module, build_trainer

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def checksum(module: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, param in sorted(module.named_parameters()):
        digest.update(name.encode())
        digest.update(param.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def main() -> None:
    out_dir = Path(sys.argv[1])
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=sys.argv[2:])
    torch.manual_seed(int(cfg.seed))
    datamodule = DialogueDataModule(OmegaConf.to_container(cfg.data, resolve=True), seed=int(cfg.seed))
    datamodule.prepare_data()
    datamodule.setup("fit")
    module = build_module(cfg, datamodule)
    before = checksum(module)
    trainer = build_trainer(cfg, None, [], out_dir)
    trainer.fit(module, datamodule=datamodule)
    result = {
        "rank": trainer.global_rank,
        "world_size": trainer.world_size,
        "global_step": trainer.global_step,
        "before": before,
        "after": checksum(module),
    }
    (out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(result), encoding="utf-8")


if __name__ == "__main__":
    main()
