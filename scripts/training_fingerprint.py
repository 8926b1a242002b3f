"""Fingerprint a fixed set of tiny training runs: every logged loss at every batch and the final weights.

A refactor that must leave training bit-identical runs this before and after and compares the two JSON
files (``diff``): same digests, same training. Floating-point results differ between CPUs (AVX2 vs
AVX-512), so the digests are compared on one machine, never pinned in a test.

    OMP_NUM_THREADS=1 python scripts/training_fingerprint.py --out before.json [--arms default,reinforce]

The arms name what they train in words; their overrides use the current key names (a refactor that renames
a key updates the override here, never the arm's meaning).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import pytorch_lightning as pl
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from omegaconf import OmegaConf  # noqa: E402
from tiny import tiny_hf_overrides, tiny_overrides  # noqa: E402

from empdg.config import compose  # noqa: E402
from empdg.data.datamodule import DialogueDataModule  # noqa: E402
from empdg.training.run import build_module, build_trainer, pretrained_vocab  # noqa: E402

BUDGET = [
    "training.phases.generator_pretrain=3",
    "training.phases.critic_pretrain=2",
    "training.phases.adversarial=3",
    "adversarial.n_critic=2",
    "adversarial.g_steps=2",
    "adversarial.probe_every=1",
    "model.dropout=0.1",
    "trainer.val_check_interval=1000",
    "logger=none",
    "training.sample_generations=0",
]

#: arm -> overrides (current key names) on top of the tiny word-level run and BUDGET
ARMS: dict[str, list[str]] = {
    "default": [],
    "reinforce": ["adversarial.estimator=reinforce"],
    "soft_unit": ["adversarial.estimator=soft"],  # soft rescales to unit length (was input_norm=unit)
    "absolute_weight": ["adversarial.w_adv=abs:0.05"],
    "no_adversarial_weight": ["adversarial.w_adv=abs:0"],  # now the same-batch control: equals control_gumbel
    "vanilla_gan": ["ablation=vanilla_gan"],
    "wgan_clip": ["adversarial.loss=wgan_clip"],
    "no_mismatch": ["adversarial.mismatch_weight=0"],
    "control": ["adversarial.w_adv=0"],
    "control_gumbel": ["adversarial.estimator=gumbel", "adversarial.w_adv=0"],
    "emotion_floor": ["adversarial.critic.emotion_floor=0.3"],
    "no_feedback": ["ablation=no_feedback"],
    "semantic_only": ["ablation=semantic_critic_only"],
    "paper_critic": ["adversarial.critic.fusion=sum", "adversarial.critic.word_match=false"],
    "moel_mle": ["model=moel", "adversarial=none"],
    "hf_seq2seq": ["model=hf_seq2seq"],
}


class Recorder(pl.Callback):
    """Every metric the module logs at each batch, timing and throughput left out (they vary)."""

    def __init__(self) -> None:
        self.losses: list[dict[str, float]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        row = {}
        for key, value in sorted(pl_module.step_metrics.items()):
            if any(word in key for word in ("time", "per_s", "throughput", "sec")):
                continue
            row[key] = float(value)
        self.losses.append(row)


def _digest(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()[:16]


def weights_digest(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def values_digest(module: torch.nn.Module) -> str:
    """The weights' values whatever their names (a refactor may move a layer without changing it)."""
    parts = sorted(_digest(t.detach().cpu().contiguous().numpy().tobytes()) for t in module.state_dict().values())
    return _digest("".join(parts).encode())


def run_arm(name: str, overrides: list[str], root: Path, tiny_pretrained: Path) -> dict:
    base = tiny_hf_overrides(tiny_pretrained) if name.startswith("hf_") else tiny_overrides()
    if name.startswith("hf_"):
        overrides = [*overrides, *[o for o in BUDGET if not o.startswith("model.dropout")]]
    else:
        overrides = [*overrides, *BUDGET]
    cfg = compose(
        "train",
        [*base, *overrides, f"paths.root_dir={root}", f"paths.output_dir={root / name}"],
    )
    pl.seed_everything(int(cfg.seed), verbose=False)
    data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    datamodule = DialogueDataModule(data_cfg, seed=int(cfg.seed), vocab=pretrained_vocab(cfg))
    datamodule.prepare_data()
    datamodule.setup("fit")
    module = build_module(cfg, datamodule)
    recorder = Recorder()
    trainer = build_trainer(cfg, None, [recorder], cfg.paths.output_dir)
    trainer.fit(module, datamodule=datamodule)
    losses = json.dumps(recorder.losses, sort_keys=True).encode()
    return {
        "batches": len(recorder.losses),
        "keys": sorted({k for row in recorder.losses for k in row}),
        "losses": _digest(losses),
        "weights": weights_digest(module),
        "weight_values": values_digest(module),
        "loss_values": _digest(json.dumps([sorted(row.values()) for row in recorder.losses]).encode()),
        "last": recorder.losses[-1] if recorder.losses else {},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--arms", default=",".join(ARMS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        from empdg.commands.make_tiny_pretrained import main as make_tiny

        tiny_pretrained = root / "tiny-bert2bert"
        make_tiny([str(tiny_pretrained), "--family", "seq2seq"])
        for name in args.arms.split(","):
            result[name] = run_arm(name, ARMS[name], root, tiny_pretrained)
            print(name, result[name]["batches"], result[name]["losses"], result[name]["weights"], flush=True)
    args.out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
