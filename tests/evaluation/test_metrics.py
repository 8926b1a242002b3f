"""The torchmetrics classes agree with the pure functions, in one process and across two DDP ranks."""

from __future__ import annotations

import json
import math
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from tiny import REPO

from empdg.data.text_metrics import corpus_bleu, distinct_n, has_repeated_ngram
from empdg.evaluation.metrics import (
    AverageLength,
    CorpusBLEU,
    DistinctN,
    Perplexity,
    RepetitionRate,
    ResponseMetrics,
    emotion_accuracy,
    emotion_macro_f1,
    ngram_hash,
)

HYPS = [
    "i am so sorry to hear that .",
    "oh no ! i am so sorry . i am so sorry .",
    "that is great ! what happened ?",
    "i am sorry to hear that .",
    "that is so good to hear .",
    "oh no , are you ok ?",
]
REFS = [
    "i am sorry to hear that . are you ok ?",
    "oh no ! what happened ?",
    "that is great news !",
    "i hope you are ok now .",
    "that is good to hear !",
    "oh no , i hope you are ok .",
]
NLL = [torch.tensor([2.0, 1.5]), torch.tensor([3.0]), torch.tensor([0.5, 0.25, 1.0])]
TOKENS = [torch.tensor([4, 3]), torch.tensor([5]), torch.tensor([2, 1, 2])]


def _tokens(lines: list[str]) -> list[list[str]]:
    return [line.split() for line in lines]


def _reference_scores() -> dict[str, float]:
    """The whole-corpus scores from the pure functions."""
    scores = {"dist_1": distinct_n(_tokens(HYPS), 1), "dist_2": distinct_n(_tokens(HYPS), 2)}
    scores.update(corpus_bleu(_tokens(HYPS), _tokens(REFS)))
    scores["ppl"] = math.exp(sum(float(x.sum()) for x in NLL) / sum(float(x.sum()) for x in TOKENS))
    return scores


def test_ngram_hash_is_stable_int64() -> None:
    value = ngram_hash(("i", "am"))
    assert value == ngram_hash(["i", "am"])
    assert -(2**63) <= value < 2**63
    # the separator keeps ("ia", "m") and ("i", "am") apart
    assert value != ngram_hash(("ia", "m"))
    assert value != ngram_hash(("i am",))


def test_distinct_counts_duplicates_across_batches_once() -> None:
    metric = DistinctN(2)
    for start in range(0, len(HYPS), 2):
        metric.update(HYPS[start : start + 2])
    assert float(metric.compute()) == pytest.approx(distinct_n(_tokens(HYPS), 2))
    # a repeated batch adds n-grams to the total but no new unique ones, so the score halves
    metric.update(HYPS)
    assert float(metric.compute()) == pytest.approx(distinct_n(_tokens(HYPS + HYPS), 2))
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert float(DistinctN(1).compute()) == 0.0


def test_bleu_class_equals_function() -> None:
    metric = CorpusBLEU()
    metric.update(HYPS[:4], REFS[:4])
    metric.update(HYPS[4:], REFS[4:])
    assert metric.compute() == pytest.approx(corpus_bleu(_tokens(HYPS), _tokens(REFS)))
    with pytest.raises(ValueError):
        metric.update(HYPS, REFS[:1])


def test_length_repetition_and_perplexity() -> None:
    length, repetition, ppl = AverageLength(), RepetitionRate(3), Perplexity()
    for start in (0, 3):
        length.update(HYPS[start : start + 3])
        repetition.update(HYPS[start : start + 3])
    lengths = [len(tokens) for tokens in _tokens(HYPS)]
    assert float(length.compute()) == pytest.approx(sum(lengths) / len(lengths))
    repeated = sum(has_repeated_ngram(tokens) for tokens in _tokens(HYPS))
    assert repeated == 1  # only "oh no ! i am so sorry . i am so sorry ."
    assert float(repetition.compute()) == pytest.approx(100 / 6)
    for nll, count in zip(NLL, TOKENS):
        ppl.update(nll, count)
    # exp(8.25 / 17), not the mean of per-batch perplexities
    assert float(ppl.compute()) == pytest.approx(math.exp(8.25 / 17))
    assert float(ppl.compute()) == pytest.approx(_reference_scores()["ppl"])
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert math.isnan(float(Perplexity().compute()))


def test_response_metrics_bundle() -> None:
    metrics = ResponseMetrics()
    metrics.update(HYPS[:3], REFS[:3])
    metrics.update(HYPS[3:], REFS[3:])
    result = metrics.compute()
    assert list(result) == ["dist_1", "dist_2", "bleu_1", "bleu_2", "bleu_3", "bleu_4", "avg_len", "rep_3"]
    expected = _reference_scores()
    for key in ("dist_1", "dist_2", "bleu_1", "bleu_2", "bleu_3", "bleu_4"):
        assert result[key] == pytest.approx(expected[key])
    assert result["rep_3"] == pytest.approx(100 / 6)
    assert all(isinstance(value, float) for value in result.values())
    metrics.reset()
    metrics.update(HYPS[:1], REFS[:1])
    assert metrics.compute()["avg_len"] == 8.0


def test_emotion_helpers() -> None:
    preds = torch.tensor([0, 0, 0, 1])
    target = torch.tensor([0, 0, 0, 2])
    assert float(emotion_accuracy()(preds, target)) == pytest.approx(0.75)
    # macro F1 over the classes present: class 0 -> 1.0, classes 1 and 2 -> 0.0 -> 1/3
    assert float(emotion_macro_f1()(preds, target)) == pytest.approx(1 / 3)
    assert emotion_macro_f1().num_classes == 32


def _ddp_worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    # a short timeout turns a rank stuck in a collective (because its peer failed) into an error, not a hang
    url, timeout = f"file://{init_file}", timedelta(seconds=20)
    dist.init_process_group("gloo", init_method=url, rank=rank, world_size=world_size, timeout=timeout)
    try:
        torch.set_num_threads(1)
        dist1, dist2, bleu, ppl = DistinctN(1), DistinctN(2), CorpusBLEU(), Perplexity()
        # rank 0 sees two uneven batches, rank 1 one batch; both share n-grams such as "i am so sorry"
        batches = [HYPS[:2], HYPS[2:3]] if rank == 0 else [HYPS[3:]]
        ref_batches = [REFS[:2], REFS[2:3]] if rank == 0 else [REFS[3:]]
        for hyps, refs in zip(batches, ref_batches):
            dist1.update(hyps)
            dist2.update(hyps)
            bleu.update(hyps, refs)
        for index in [0, 1] if rank == 0 else [2]:
            ppl.update(NLL[index], TOKENS[index])
        result = {
            "dist_1": float(dist1.compute()),
            "dist_2": float(dist2.compute()),
            "ppl": float(ppl.compute()),
        }
        result.update(bleu.compute())
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


def test_ddp_sync_equals_single_process(tmp_path: Path, monkeypatch) -> None:
    # the spawned ranks unpickle _ddp_worker by its module name (tests.evaluation.test_metrics): they need the
    # checkout on sys.path, which pytest's importlib mode does not add (the test passed only after another one did)
    monkeypatch.syspath_prepend(str(REPO))
    world_size = 2
    mp.spawn(_ddp_worker, args=(world_size, str(tmp_path / "init"), str(tmp_path)), nprocs=world_size, join=True)
    expected = _reference_scores()
    # a per-rank count of uniques would overcount the n-grams both ranks saw
    local_only = distinct_n(_tokens(HYPS[:3]), 1)
    for rank in range(world_size):
        result = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert result == pytest.approx(expected, rel=1e-12)
        assert result["dist_1"] != pytest.approx(local_only)
