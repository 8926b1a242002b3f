"""``python -m empdg.benchmarks.gpu``: the figures' arithmetic by hand, and one tiny run on the CPU.

The figures themselves are measured on a GPU by ``scripts/gpu_check.py``; here the parts that decide what
they mean (how busy the GPU was, the projections, the padded vocabulary) are checked where they can fail.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from empdg.benchmarks.gpu import add_profile, kernel_busy, main, markdown, pad_vocab, profile_call, project
from empdg.data.vocab import SPECIAL_TOKENS, Vocab


def test_busy_time_is_the_union_of_the_kernels_intervals() -> None:
    # [0, 10] and [5, 15] overlap (two streams): busy 0..15 once, then 20..30: 25 of 40
    assert kernel_busy([(20, 30), (0, 10), (5, 15)], 40) == pytest.approx(0.625)
    # a kernel inside another adds nothing; touching intervals add their lengths
    assert kernel_busy([(0, 10), (2, 3), (10, 12)], 24) == pytest.approx(0.5)
    assert kernel_busy([], 7) == 0


def test_the_schedule_projection_scales_updates_by_examples() -> None:
    cfg = OmegaConf.create(
        {
            "data": {"batch_size": 16},
            "training": {"phases": {"generator_pretrain": 100, "critic_pretrain": 10, "adversarial": 20}},
        }
    )
    row = {"batch": 64, "mle_ms": 10.0, "critic_ms": 20.0, "cycle_gumbel_ms": 50.0}
    # batch 64 is 4 of the configured 16: a quarter of the updates. 25 x 10 ms + 2.5 x 20 ms + 5 x 50 ms = 0.55 s
    # one epoch of 40,000 examples: ceil(40000 / 64) = 625 updates of 10 ms = 6.25 s
    assert project(row, cfg, 40_000) == pytest.approx({"schedule_h": 0.55 / 3600, "mle_epoch_min": 6.25 / 60})
    # a model without critics: the MLE phase only
    del row["critic_ms"], row["cycle_gumbel_ms"]
    assert project(row, cfg, 40_000)["schedule_h"] == pytest.approx(0.25 / 3600)


def test_a_padded_vocabulary_keeps_its_words_ids() -> None:
    vocab = Vocab([*SPECIAL_TOKENS, "happy", "sad"], {"happy": 3, "sad": 1})
    padded = pad_vocab(vocab, 20)
    assert len(padded) == 20 and padded.tokens[: len(vocab)] == vocab.tokens
    assert padded.encode(["sad", "happy"]) == vocab.encode(["sad", "happy"])
    assert padded.counts == vocab.counts  # the fillers never occur
    assert pad_vocab(vocab, None) is vocab and pad_vocab(vocab, 5) is vocab


def test_the_profile_names_the_costliest_operators() -> None:
    a = torch.randn(256, 256)
    kernels, ops = profile_call(lambda: (a @ a).relu(), torch.device("cpu"))
    assert kernels == []  # no GPU kernels on the CPU
    names = [op["name"] for op in ops]
    assert any(name in ("aten::mm", "aten::matmul") for name in names), names
    assert all(op["own_ms"] > 0 and op["calls"] >= 1 for op in ops)
    assert [op["own_ms"] for op in ops] == sorted((op["own_ms"] for op in ops), reverse=True)


def test_a_profiler_that_fails_costs_its_own_figures_only() -> None:
    def refused() -> None:
        raise RuntimeError("CUPTI_ERROR_INSUFFICIENT_PRIVILEGES\nmore lines")

    row = {"mle_ms": 4.0}
    add_profile(row, "mle", refused, torch.device("cpu"), keep_ops=True)
    assert row == {"mle_ms": 4.0, "mle_busy": None, "mle_kernels": None,
                   "profile_error": "RuntimeError: CUPTI_ERROR_INSUFFICIENT_PRIVILEGES"}  # fmt: skip


def test_the_table_prints_missing_figures_as_dashes() -> None:
    row = {"model": "moel", "batch": 16, "params_m": 1.5, "mle_ms": 2.0, "examples_per_s": 8000.0, "mfu": 0.1,
           "greedy_ms": 3.0, "mle_busy": 0.25, "mle_kernels": 1310, "greedy_busy": None, "peak_mib": None,
           "schedule_h": 1.0, "mle_epoch_min": 2.0,
           "profile": {"mle": [{"name": "aten::mm", "calls": 3, "own_ms": 1.25}]}}  # fmt: skip
    meta = {"device_name": "cpu", "precision": "bf16-mixed", "repeats": 1, "warmup": 0, "peak_tflops": 790.0}
    lines = markdown([row], meta).splitlines()
    cells = [c.strip() for c in lines[4].strip("|").split("|")]
    assert cells[0:2] == ["moel", "16"] and cells[6:8] == ["-", "- / - / -"]  # no critics: no critic figures
    assert cells[9] == "25% (1,310 kernels) / -" and cells[10] == "-"
    assert "| `aten::mm` | 3 | 1.25 |" in lines
    failed = markdown([{**row, "profile_error": "RuntimeError: CUPTI refused"}], meta)
    assert "moel, batch 16: no profile (RuntimeError: CUPTI refused)" in failed.splitlines()


@pytest.mark.slow
def test_a_tiny_run_writes_rows_with_the_padded_vocabulary(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    small = ["model.emb_dim=16", "model.hidden_dim=16", "model.attn_dim=16", "model.ff_dim=16",
             "data.builtin.train_per_emotion=1", "data.builtin.valid_per_emotion=1",
             "data.builtin.test_per_emotion=1"]  # fmt: skip
    args = ["--device", "cpu", "--batch-sizes", "2,3", "--models", "empdg", "--repeats", "1", "--warmup", "0",
            "--vocab-size", "700", "--json", str(out), *small]  # fmt: skip
    rows = main(args)
    record = json.loads(out.read_text())
    assert [r["batch"] for r in record["rows"]] == [2, 3] and record["errors"] == {} and record["complete"]
    for row in rows:
        assert row["vocab"] == 700
        for key in ("mle_ms", "critic_ms", "cycle_gumbel_ms", "cycle_reinforce_ms", "cycle_soft_ms", "greedy_ms"):
            assert row[key] > 0 and math.isfinite(row[key]), key
        assert row["mle_busy"] is None and row["peak_mib"] is None  # CPU: no kernels, no CUDA memory
    assert "profile" in rows[0] and "profile" not in rows[1]  # the first model's smallest batch only
    assert rows[0]["profile"]["mle"] and rows[0]["profile"]["greedy"]
    assert record["markdown"].count("| empdg |") == 2 and "costliest operators" in record["markdown"]
