"""The bucketing benchmark times the same turns under every data.bucket_by (figures printed, never asserted)."""

from __future__ import annotations

from empdg.benchmarks.bucketing import main
from empdg.benchmarks.gpu import fit_datamodule
from empdg.config import compose


def test_every_key_times_the_same_turns_on_one_model() -> None:
    small = ["data=builtin", "experiment=quickstart", "data.builtin.train_per_emotion=1",
             "data.builtin.valid_per_emotion=1", "data.builtin.test_per_emotion=1"]  # fmt: skip
    rows = main(["--batch-size", "4", *small, "runtime.num_threads=1"])
    assert [r["bucket_by"] for r in rows] == ["context_reply", "longest"] and {r["data"] for r in rows} == {"builtin"}
    # every batch of the epoch under both keys: every turn with a next utterance, once, in as many batches
    feedback = [it for it in fit_datamodule(compose("train", small)).datasets["train"].items if it.has_feedback]
    assert rows[0]["turns"] == rows[1]["turns"] == list(range(len(feedback)))
    assert rows[0]["batches"] == rows[1]["batches"] == -(-len(feedback) // 4)
    for row in rows:
        assert row["mle_s"] > 0 and row["critic_s"] > 0
        assert min(row["context"], row["reply"], row["next"]) >= 1
    cut = main(["--batch-size", "4", "--batches", "2", *small])
    assert [r["batches"] for r in cut] == [2, 2] and all(len(r["turns"]) <= 8 for r in cut)
