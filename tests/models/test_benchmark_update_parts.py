"""The update-parts benchmark splits each update's time into parts that add up to it (timings never asserted)."""

from __future__ import annotations

import json

import pytest
import torch

import empdg.training.adversarial as adversarial
from empdg.benchmarks.update_parts import PartTimer, instrumented, main, timed_updates
from empdg.data.dataset import collate
from empdg.training.instruments import gradient_probe

SMALL = ["data=builtin", "experiment=quickstart", "runtime.num_threads=1", "data.batch_size=4"]


def test_a_part_excludes_the_parts_it_calls() -> None:
    ticks = iter([0.0, 2.0, 7.0, 10.0, 11.0, 12.5])  # outer opens, inner 2-7, outer closes at 10; again 11-12.5
    timer = PartTimer(clock=lambda: next(ticks))
    timer.kind = "k"
    with timer.part("outer"), timer.part("inner"):
        pass
    timer.kind = "j"
    with timer.part("inner"):
        pass
    assert timer.seconds == {"k: outer": 5.0, "k: inner": 5.0, "j: inner": 1.5}


@pytest.mark.parametrize(
    ("estimator", "critic_parts", "generator_parts"),
    [
        # gumbel decodes its fake reply in both updates and the critics also reject the greedy reply
        ("gumbel", {"fake reply", "greedy decoding", "gradient penalty"}, {"fake reply", "gradient probe"}),
        # reinforce samples its fake reply and decodes greedily for the negatives and its baseline
        ("reinforce", {"sampled decoding", "greedy decoding", "gradient penalty"}, {"gradient probe"}),
        # soft reads the teacher-forced pass: no decoding anywhere, no greedy negatives
        ("soft", {"teacher-forced pass", "fake reply", "gradient penalty"}, {"teacher-forced pass", "gradient probe"}),
    ],
)
def test_the_parts_add_up_to_each_update(estimator, critic_parts, generator_parts, tmp_path) -> None:
    written = tmp_path / "parts.json"
    rows = main(["--batches", "2", "--json", str(written), *SMALL, f"adversarial.estimator={estimator}"])
    assert json.loads(written.read_text()) == rows and {r["device"] for r in rows} == {"cpu"}
    assert [r["update"] for r in rows] == ["critic", "generator"]
    for row, expected in zip(rows, (critic_parts, generator_parts), strict=True):
        assert row["estimator"] == estimator and row["batches"] == 2 and row["batch"] == 4
        parts = row["parts_ms"]
        assert expected | {"critic scores", "backward", "optimizer step", "other"} <= set(parts)
        # the update timed from outside: the parts miss only the timer's own bookkeeping (microseconds)
        assert sum(parts.values()) == pytest.approx(row["ms"], abs=0.5)
        assert all(v >= 0 for v in parts.values())
    if estimator == "soft":
        assert "greedy decoding" not in rows[0]["parts_ms"]
    assert "gradient penalty" not in rows[1]["parts_ms"]  # only critics are penalised


def test_instrumenting_leaves_the_module_as_it_was(compose_train) -> None:
    from omegaconf import OmegaConf

    from empdg.data.datamodule import DialogueDataModule
    from empdg.training.run import build_module

    cfg = compose_train()
    datamodule = DialogueDataModule(OmegaConf.to_container(cfg.data, resolve=True), seed=0)
    datamodule.setup("fit")
    module = build_module(cfg, datamodule)
    owners = (module.generator, module.game, module.game.panel, module.game.estimator)
    before = [set(vars(o)) for o in owners]
    with instrumented(module, PartTimer()):
        assert adversarial.gradient_probe is not gradient_probe and "forward" in vars(module.generator)
    assert [set(vars(o)) for o in owners] == before
    assert adversarial.gradient_probe is gradient_probe
    # a frozen parameter stays frozen through both updates; the rest train and end trainable
    frozen = module.generator.word_embedding.weight
    frozen.requires_grad_(False)
    before = frozen.detach().clone()
    batch = collate([it for it in datamodule.datasets["train"].items if it.has_feedback][:4])
    critic_s, generator_s = timed_updates(module, [batch], PartTimer())
    assert critic_s > 0 and generator_s > 0 and torch.equal(frozen, before) and not frozen.requires_grad
    assert all(p.requires_grad for p in module.parameters() if p is not frozen)


def test_the_clock_synchronises_only_a_cuda_device() -> None:
    import time

    from empdg.benchmarks.update_parts import synchronised_clock

    assert synchronised_clock(torch.device("cpu")) is time.perf_counter
    assert synchronised_clock(torch.device("cuda")) is not time.perf_counter  # built without touching a GPU
