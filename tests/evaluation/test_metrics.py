"""The registered corpus metrics on hand-computed cases, the evaluation's figures, and the DDP accumulators that
validation feeds with the same statistics (one process and two ranks agree)."""

from __future__ import annotations

import json
import math
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from tiny import REPO

from empdg.data.corpus_metrics import METRICS, CorpusStatistics, ScoredExample, metric_keys, register_metric
from empdg.data.text_metrics import corpus_bleu, distinct_n, has_repeated_ngram
from empdg.evaluation.metrics import corpus_figures, emotion_macro_f1
from empdg.training.losses import Perplexity
from empdg.training.validation import SummedStatistics

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


def test_text_metrics_equal_the_pure_functions_and_hand_counts() -> None:
    examples = [ScoredExample(hyp, ref, "sad") for hyp, ref in zip(HYPS, REFS)]
    figures = corpus_figures(examples)
    assert list(figures)[:8] == ["dist_1", "dist_2", "bleu_1", "bleu_2", "bleu_3", "bleu_4", "avg_len", "rep_3"]
    assert figures["dist_1"] == distinct_n(_tokens(HYPS), 1)
    assert figures["dist_2"] == distinct_n(_tokens(HYPS), 2)
    for key, value in corpus_bleu(_tokens(HYPS), _tokens(REFS)).items():
        assert figures[key] == pytest.approx(value, rel=1e-15), key
    assert figures["avg_len"] == (8 + 13 + 7 + 7 + 7 + 7) / 6
    assert sum(has_repeated_ngram(tokens) for tokens in _tokens(HYPS)) == 1  # "... i am so sorry . i am so sorry ."
    assert figures["rep_3"] == 100 / 6
    assert figures["unique_replies"] == 6 and isinstance(figures["unique_replies"], int)
    assert "ppl" not in figures and "emotion_acc" not in figures  # no NLL, no predicted emotions


def test_perplexity_and_emotion_accuracy_from_per_example_statistics() -> None:
    examples = [
        ScoredExample("a", "a", "sad", predicted_emotion="sad", nll_sum=2.0, n_tokens=4),
        ScoredExample("b", "b", "joyful", predicted_emotion="sad", nll_sum=6.25, n_tokens=13),
    ]
    figures = CorpusStatistics(examples).point(["ppl", "emotion_acc"])
    # exp(total NLL / total tokens), not the mean of per-example perplexities
    assert figures == {"ppl": math.exp(8.25 / 17), "emotion_acc": 0.5}
    # the weights count examples: the first twice
    weighted = CorpusStatistics(examples).compute(np.array([[2, 1]]), ["ppl", "emotion_acc"])
    assert weighted["ppl"][0] == math.exp(10.25 / 21) and weighted["emotion_acc"][0] == 2 / 3


def test_a_metric_key_belongs_to_one_metric() -> None:
    class Clash(METRICS["avg_len"].__class__):
        name = "another_length"

    with pytest.raises(ValueError, match="avg_len"):
        register_metric(Clash())
    assert "another_length" not in METRICS and metric_keys().count("avg_len") == 1


def test_perplexity_accumulates_sums_not_batch_perplexities() -> None:
    ppl = Perplexity()
    for nll, count in zip(NLL, TOKENS):
        ppl.update(nll, count)
    assert float(ppl.compute()) == math.exp(8.25 / 17)
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert math.isnan(float(Perplexity().compute()))


def test_summed_statistics_give_the_registered_formula_in_float64() -> None:
    accuracy = SummedStatistics(METRICS["emotion_acc"])
    accuracy.update([ScoredExample("", emotion="sad", predicted_emotion="sad")])
    accuracy.update([ScoredExample("", emotion=e, predicted_emotion="sad") for e in ("joyful", "angry")])
    assert float(accuracy.compute()["emotion_acc"]) == 1 / 3  # exactly: float64, not a float32 share
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert math.isnan(float(SummedStatistics(METRICS["emotion_acc"]).compute()["emotion_acc"]))


def test_emotion_macro_f1() -> None:
    preds = torch.tensor([0, 0, 0, 1])
    target = torch.tensor([0, 0, 0, 2])
    # macro F1 over the classes present: class 0 -> 1.0, classes 1 and 2 -> 0.0 -> 1/3
    assert float(emotion_macro_f1()(preds, target)) == pytest.approx(1 / 3)
    assert emotion_macro_f1().num_classes == 32


LABELS = ["sad", "joyful", "sad", "angry", "sad"]
PREDICTED = ["sad", "sad", "sad", "angry", "joyful"]


def _ddp_worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    # a short timeout turns a rank stuck in a collective (because its peer failed) into an error, not a hang
    url, timeout = f"file://{init_file}", timedelta(seconds=20)
    dist.init_process_group("gloo", init_method=url, rank=rank, world_size=world_size, timeout=timeout)
    try:
        torch.set_num_threads(1)
        ppl, accuracy = Perplexity(), SummedStatistics(METRICS["emotion_acc"])
        for index in [0, 1] if rank == 0 else [2]:  # uneven shards
            ppl.update(NLL[index], TOKENS[index])
        for index in [0, 1, 2] if rank == 0 else [3, 4]:
            accuracy.update([ScoredExample("", emotion=LABELS[index], predicted_emotion=PREDICTED[index])])
        result = {"ppl": float(ppl.compute()), "emotion_acc": float(accuracy.compute()["emotion_acc"])}
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


def test_ddp_sync_equals_single_process(tmp_path: Path, monkeypatch) -> None:
    # the spawned ranks unpickle _ddp_worker by its module name (tests.evaluation.test_metrics): they need the
    # checkout on sys.path, which pytest's importlib mode does not add (the test passed only after another one did)
    monkeypatch.syspath_prepend(str(REPO))
    world_size = 2
    mp.spawn(_ddp_worker, args=(world_size, str(tmp_path / "init"), str(tmp_path)), nprocs=world_size, join=True)
    examples = [
        ScoredExample("", emotion=label, predicted_emotion=predicted) for label, predicted in zip(LABELS, PREDICTED)
    ]
    expected = {"ppl": math.exp(8.25 / 17), **CorpusStatistics(examples).point(["emotion_acc"])}
    assert expected["emotion_acc"] == 3 / 5  # a per-rank share would be 2/3 or 1/2
    for rank in range(world_size):
        assert json.loads((tmp_path / f"rank{rank}.json").read_text()) == pytest.approx(expected, rel=1e-12)


def test_validation_greedy_reply_figures_are_the_registered_metrics() -> None:
    from empdg.training.validation import greedy_reply_figures

    values = greedy_reply_figures(["a b", "a  b", "a c"])
    # unigrams 6, distinct {a, b, c}; bigrams 3, distinct {ab, ac}; replies "a b" twice after whitespace folding
    assert values == {"dist_1": 100 * 3 / 6, "dist_2": 100 * 2 / 3, "unique_replies": 2.0, "n_replies": 3.0}
