"""The bucketing benchmark times the same turns under every data.bucket_by (figures printed, never asserted)."""

from __future__ import annotations

import pytest

from empdg.benchmarks.bucketing import main


def test_every_key_times_the_same_turns_on_one_model() -> None:
    small = ["data=builtin", "experiment=quickstart", "data.builtin.train_per_emotion=1",
             "data.builtin.valid_per_emotion=1", "data.builtin.test_per_emotion=1"]  # fmt: skip
    rows = main(["--batch-size", "4", *small, "runtime.num_threads=1"])
    assert [r["bucket_by"] for r in rows] == ["context_reply", "longest"] and {r["data"] for r in rows} == {"builtin"}
    # every batch of the epoch under both keys: the same number of batches of the same turns
    assert rows[0]["batches"] == rows[1]["batches"] > 1
    assert rows[0]["mle_ratio"] == rows[0]["critic_ratio"] == 1.0
    for row in rows:
        assert row["mle_s"] > 0 and row["critic_s"] > 0
        assert row["mle_ratio"] == pytest.approx(row["mle_s"] / rows[0]["mle_s"])
        assert min(row["context"], row["reply"], row["next"]) >= 1
    cut = main(["--batch-size", "4", "--batches", "2", *small])
    assert [r["batches"] for r in cut] == [2, 2]
