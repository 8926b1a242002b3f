"""Fine-tuning a pretrained generator: the warm-up schedule by hand, and the sweep space over it."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from empdg.config import compose
from empdg.config.schema import OptimConfig
from empdg.training.schedules import build_scheduler, linear_warmup_lambda


def test_linear_warmup_rises_then_stays_or_decays_to_zero() -> None:
    constant = linear_warmup_lambda(4, None)
    assert [constant(s) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    decaying = linear_warmup_lambda(2, 6)
    assert [decaying(s) for s in range(8)] == [0.5, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    assert linear_warmup_lambda(0, None)(0) == 1.0


def test_the_scheduler_drives_the_optimizer_and_bad_settings_are_refused() -> None:
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([parameter], lr=0.1)
    scheduler = build_scheduler(optimizer, OptimConfig(lr=0.1, scheduler="linear_warmup", warmup_steps=2), 8)
    rates = []
    for _ in range(3):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates == pytest.approx([0.05, 0.1, 0.1])
    with pytest.raises(ValueError, match="optim.decay_steps=2 must be > optim.warmup_steps=5"):
        OptimConfig(scheduler="linear_warmup", warmup_steps=5, decay_steps=2)


def test_the_finetune_sweep_searches_keys_a_pretrained_run_has(tiny_pretrained, tmp_path) -> None:
    from empdg.sweep.runner import prepare

    overrides = ["sweep=finetune", "model=hf_causal", f"model.pretrained={tiny_pretrained['causal']}",
                 "optim=finetune", f"paths.root_dir={tmp_path}", "logger=none"]  # fmt: skip
    plan, base = prepare(compose("sweep_root", overrides), overrides, tmp_path / "sweep")
    assert plan.settings["metric"] == "val/subword_ppl"
    keys = {spec.key for spec in plan.specs}
    assert keys == {"optim.lr", "optim.warmup_steps", "model.lora_rank"}
    assert all(OmegaConf.select(base, key) is not None for key in keys)
    assert base.optim.scheduler == "linear_warmup"
