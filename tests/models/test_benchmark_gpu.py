"""``python -m empdg.benchmarks.gpu``: the figures' arithmetic by hand, and one tiny run on the CPU.

The figures themselves are measured on a GPU by ``scripts/gpu_check.py``; here the parts that decide what
they mean (how busy the GPU was, the projections, the padded vocabulary) are checked where they can fail.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from empdg.benchmarks.gpu import (
    add_profile,
    kernel_busy,
    main,
    markdown,
    measurement_batches,
    pad_vocab,
    padded_widths,
    profile_call,
    project,
)
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


def _turn(context: int, reply: int, next_: int = 0) -> SimpleNamespace:
    return SimpleNamespace(context_ids=[5] * context, target_ids=[6] * reply, feedback_ids=[7] * next_)


def test_a_batch_is_as_wide_as_its_longest_member() -> None:
    items = [_turn(3, 2, 4), _turn(7, 1), _turn(4, 5, 2)]
    # batch [0, 1]: context 7, reply 2, next 4; batch [2]: 4, 5, 2
    assert padded_widths(items, [[0, 1], [2]]) == pytest.approx({"context": 5.5, "reply": 3.5, "next": 3.0})


def test_the_measured_batches_are_bucketed_as_training_buckets_them() -> None:
    items = [_turn(n, 1) for n in (8, 3, 6, 1, 5, 2, 7, 4)]  # keys 9, 4, 7, 2, 6, 3, 8, 5: one bucket of all eight
    bucketed = {"bucketing": True, "bucket_size_multiplier": 50, "bucket_by": "context_reply"}
    pool, batches = measurement_batches(items, 2, bucketed)
    assert pool is items and sorted(len(b) for b in batches) == [2, 2, 2, 2]
    # sorted by length, then paired: contexts (1, 2), (3, 4), (5, 6), (7, 8), widths 2, 4, 6, 8
    assert padded_widths(pool, batches)["context"] == pytest.approx(5.0)
    # this can fail: without bucketing the pairs mix short and long turns (seed 0's shuffle: wider)
    unbucketed = padded_widths(*measurement_batches(items, 2, {**bucketed, "bucketing": False}))
    assert unbucketed["context"] > 5.0


def test_bucketing_by_the_longest_field_pads_the_next_utterance_less() -> None:
    # (context, reply, next): the sum of context and reply pairs 0 with 1 and 2 with 3, each pair mixing a
    # short and a long next utterance; the longest field pairs the two long next utterances
    items = [_turn(2, 2, 9), _turn(3, 2, 1), _turn(5, 3, 2), _turn(6, 3, 8)]
    data = {"bucketing": True, "bucket_size_multiplier": 50, "bucket_by": "context_reply"}
    # keys 4, 5, 8, 9: batches [0, 1], [2, 3]: context 3, 6; reply 2, 3; next 9, 8
    by_sum = padded_widths(*measurement_batches(items, 2, data, count=2))
    assert by_sum == pytest.approx({"context": 4.5, "reply": 2.5, "next": 8.5})
    # keys 9, 3, 5, 8: batches [1, 2], [3, 0]: context 5, 6; reply 3, 3; next 2, 9
    by_longest = padded_widths(*measurement_batches(items, 2, {**data, "bucket_by": "longest"}, count=2))
    assert by_longest == pytest.approx({"context": 5.5, "reply": 3.0, "next": 5.5})


def test_too_few_turns_are_cycled_into_full_batches() -> None:
    items = [_turn(1, 1), _turn(2, 1), _turn(3, 1)]
    data = {"bucketing": True, "bucket_size_multiplier": 50, "bucket_by": "context_reply"}
    pool, batches = measurement_batches(items, 2, data)
    assert len(pool) == 8 and [len(b) for b in batches] == [2, 2, 2, 2]
    assert sorted(i for b in batches for i in b) == list(range(8))


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
    assert record["markdown"].count("| empdg |") == 4 and "costliest operators" in record["markdown"]
    for row in rows:  # the widths table: the measured batches beside a training epoch's
        assert set(row["widths"]) == set(row["train_widths"]) == {"context", "reply", "next"}
        assert all(width >= 1 for width in [*row["widths"].values(), *row["train_widths"].values()])
    assert "| empdg | 2 | " in record["markdown"] and "training epoch's" in record["markdown"]


def test_lengths_alone_builds_no_model() -> None:
    small = ["data.builtin.train_per_emotion=1", "data.builtin.valid_per_emotion=1", "data.builtin.test_per_emotion=1"]
    rows = main(["--lengths", "--batch-sizes", "1,1000", *small])
    assert [r["batch"] for r in rows] == [1, 1000] and {r["data"] for r in rows} == {"builtin"}
    one, everything = rows
    # batch 1 pads nothing: the mean lengths; one batch of every turn: the longest of each
    assert one["context"] < everything["context"] and one["reply"] <= everything["reply"]


@pytest.mark.real_data
def test_the_ed_sample_widths_the_gpu_docs_quote(real_sample_dir: Path) -> None:
    data = ["data=empathetic_dialogues", f"data.root={real_sample_dir}", "data.download=false"]
    rows = main(["--lengths", "--batch-sizes", "16,256", *data])
    assert rows[0]["turns"] == 2673
    # docs/gpu.md: at batch 16 a training epoch's ED batches are 32.2 ids wide in the context, 23.8 in the reply and
    # 39.9 in the next utterance, which the bucketing key (context + reply) leaves out
    assert [round(rows[0][k], 1) for k in ("context", "reply", "next")] == [32.2, 23.8, 39.9]
    assert rows[1]["next"] > rows[0]["next"]


@pytest.mark.real_data
def test_on_the_ed_sample_bucketing_by_the_longest_field_pads_the_critics_input_less(real_sample_dir: Path) -> None:
    data = ["data=empathetic_dialogues", f"data.root={real_sample_dir}", "data.download=false"]
    by_sum, by_longest = (main(["--lengths", "--batch-sizes", "16", *data, f"data.bucket_by={k}"])[0]
                          for k in ("context_reply", "longest"))  # fmt: skip
    # docs/gpu.md: the next utterance 39.9 -> 27.1 ids wide at batch 16, the generator's context and reply together
    # no wider (56.0 -> 56.1)
    assert [round(by_longest[k], 1) for k in ("context", "reply", "next")] == [30.1, 26.0, 27.1]
    assert by_longest["next"] < 0.7 * by_sum["next"]
    assert by_longest["context"] + by_longest["reply"] == pytest.approx(by_sum["context"] + by_sum["reply"], abs=0.2)
