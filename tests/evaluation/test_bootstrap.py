"""Bootstrap intervals and paired tests: analytic and hand-computed cases, and agreement with empdg.evaluate."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest

from empdg.data.corpus_metrics import metric_keys
from empdg.evaluation.bootstrap import (
    Difference,
    Estimate,
    ExampleStatistics,
    bootstrap_compare,
    compare_prediction_files,
    paired_difference,
    percentile_interval,
    resample_counts,
)
from empdg.evaluation.release_format import PredictionRecord
from empdg.evaluation.runner import score_records
from empdg.evaluation.scored_examples import (
    ScoredExample,
    examples_from_records,
    read_scored_examples,
    select_subset,
    write_scored_jsonl,
)

POSITIVE_REPLY, NEUTRAL_REPLY = "that is great !", "what happened ?"  # VADER +0.6588 and 0.0
MEANING_KEYS = ("sim_reference", "sim_context", "reply_emotion_acc", "reply_emotion_acc_gold")


def corpus(n: int, seed: int = 0) -> list[ScoredExample]:
    """Varied random replies over a small vocabulary, gold emotions alternating joyful / sad."""
    rng = random.Random(seed)
    vocab = ["i", "am", "so", "sorry", "that", "is", "great", "good", "to", "hear", "!", ".", "oh", "no", "wow"]
    examples = []
    for i in range(n):
        pred = " ".join(rng.choice(vocab) for _ in range(rng.randint(2, 9)))
        ref = " ".join(rng.choice(vocab) for _ in range(rng.randint(2, 9)))
        examples.append(
            ScoredExample(
                pred=pred,
                ref=ref,
                emotion="joyful" if i % 2 else "sad",
                predicted_emotion="joyful" if rng.random() < 0.6 else "sad",
                nll_sum=rng.uniform(5.0, 30.0),
                n_tokens=rng.randint(3, 10),
                has_feedback=i % 3 != 0,
                example_id=f"test-{i}",
            )
        )
    return examples


def test_resample_counts() -> None:
    counts = resample_counts(7, 50, seed=3)
    assert counts.shape == (50, 7) and (counts.sum(axis=1) == 7).all() and (counts >= 0).all()
    assert (resample_counts(7, 50, seed=3) == counts).all()  # seeded
    assert not (resample_counts(7, 50, seed=4) == counts).all()
    # every example is drawn about equally often: expected count 1 per resample
    assert resample_counts(20, 2000, seed=0).mean(axis=0) == pytest.approx(np.ones(20), abs=0.1)
    with pytest.raises(ValueError):
        resample_counts(0, 10, seed=0)


def test_point_estimates_equal_the_evaluation_metrics() -> None:
    examples = corpus(60)
    records = [
        PredictionRecord(e.emotion, ["ctx"], e.pred, e.ref, predicted_emotion=e.predicted_emotion) for e in examples
    ]
    expected = score_records(records).metrics
    point = ExampleStatistics(examples).point()
    # every metric but those that read meaning (their per-example values come from the sentence encoder),
    # exactly: the evaluation aggregates the same statistics with the same functions
    assert set(point) == set(metric_keys()) - set(MEANING_KEYS)
    assert {key: expected[key] for key in point if key in expected} == {k: v for k, v in point.items() if k != "ppl"}
    # perplexity over the set is exp(total NLL / total tokens); emotion_acc the share of correct predictions
    nll, tokens = sum(e.nll_sum for e in examples), sum(e.n_tokens for e in examples)
    assert point["ppl"] == pytest.approx(math.exp(nll / tokens))
    assert point["emotion_acc"] == pytest.approx(np.mean([e.predicted_emotion == e.emotion for e in examples]))


def test_hand_computed_resample() -> None:
    examples = [
        ScoredExample("a b", "a b", "joyful", nll_sum=2.0, n_tokens=2),
        ScoredExample("a c", "x", "joyful", nll_sum=6.0, n_tokens=3),
        ScoredExample("a b", "a b", "sad", nll_sum=1.0, n_tokens=1),
    ]
    stats = ExampleStatistics(examples)
    # draw example 0 twice and example 1 once (example 2 not at all)
    values = stats.compute(np.array([[2, 1, 0]]), ["dist_1", "dist_2", "unique_replies", "unique_reply_share", "ppl"])
    # unigrams a b | a b | a c -> 6 in all, unique {a, b, c}: 50.0; bigrams ab ab ac -> 3, unique 2: 66.7
    assert values["dist_1"][0] == pytest.approx(50.0)
    assert values["dist_2"][0] == pytest.approx(200 / 3)
    assert values["unique_replies"][0] == 2 and values["unique_reply_share"][0] == pytest.approx(2 / 3)
    assert values["ppl"][0] == pytest.approx(math.exp((2 * 2.0 + 6.0) / (2 * 2 + 3)))
    # the full set: replies "a b" twice -> 2 unique of 3
    assert stats.point(["unique_replies"]) == {"unique_replies": 2.0}


def test_meaning_metrics_resample_as_means_of_their_stored_values(tmp_path: Path) -> None:
    examples = [
        ScoredExample("a", "a", "sad", sim_reference=0.9, sim_context=0.1, reply_emotion="sad",
                      reference_emotion="sad"),
        ScoredExample("b", "c", "joyful", sim_reference=0.3, sim_context=0.5, reply_emotion="sad",
                      reference_emotion="joyful"),
        ScoredExample("d", "e", "angry", sim_reference=-0.2, sim_context=0.0, reply_emotion="angry",
                      reference_emotion="sad"),
    ]  # fmt: skip
    stats = ExampleStatistics(examples)
    names = ["sim_reference", "sim_context", "reply_emotion_acc", "reply_emotion_acc_gold"]
    values = stats.compute(np.array([[2, 1, 0], [0, 0, 3]]), names)
    assert values["sim_reference"] == pytest.approx([(2 * 0.9 + 0.3) / 3, -0.2])
    assert values["sim_context"] == pytest.approx([(2 * 0.1 + 0.5) / 3, 0.0])
    assert values["reply_emotion_acc"] == pytest.approx([2 / 3, 1.0])
    assert values["reply_emotion_acc_gold"] == pytest.approx([1.0, 0.0])
    # written and read back through predictions.jsonl, and absent where an evaluation did not compute them
    records = [PredictionRecord(e.emotion, ["hi"], e.pred, e.ref) for e in examples]
    scores = [{k: getattr(e, k) for k in ("sim_reference", "sim_context", "reply_emotion", "reference_emotion")}
              for e in examples]  # fmt: skip
    write_scored_jsonl(tmp_path / "p.jsonl", records, scores)
    assert ExampleStatistics(read_scored_examples(tmp_path / "p.jsonl")).point(names) == stats.point(names)
    assert not set(names) & set(ExampleStatistics(examples_from_records(records)).available)


def test_interval_of_a_constant_is_degenerate() -> None:
    examples = [ScoredExample(POSITIVE_REPLY, "that is good", "joyful", nll_sum=3.0, n_tokens=2)] * 25
    result = bootstrap_compare({"same": examples}, metrics=["ppl", "dist_2", "valence_agreement"])
    for metric, estimate in result.systems["same"].estimates.items():
        assert estimate.low == pytest.approx(estimate.value) == pytest.approx(estimate.high), metric
    assert result.systems["same"].estimates["valence_agreement"].value == 1.0
    assert result.systems["same"].estimates["ppl"].value == pytest.approx(math.exp(1.5))


def test_interval_of_a_share_matches_the_normal_approximation() -> None:
    # 400 replies, half agreeing: standard error sqrt(0.5 * 0.5 / 400) = 0.025 -> 95% half-width 1.96 * 0.025
    examples = [ScoredExample(POSITIVE_REPLY if i % 2 else NEUTRAL_REPLY, "x", "joyful") for i in range(400)]
    result = bootstrap_compare({"half": examples}, metrics=["valence_agreement"], n_resamples=4000, seed=1)
    estimate = result.systems["half"].estimates["valence_agreement"]
    assert estimate.value == 0.5
    assert (estimate.high - estimate.low) / 2 == pytest.approx(1.96 * 0.025, rel=0.08)
    assert (estimate.low + estimate.high) / 2 == pytest.approx(0.5, abs=0.005)


def test_set_metric_intervals_are_centred_on_the_full_set_value() -> None:
    # resampling repeats examples, which lowers Distinct-n and unique replies on every resample;
    # the re-centred interval still covers the full-set value
    examples = corpus(300)
    stats = ExampleStatistics(examples)
    replicates = stats.replicates(resample_counts(300, 500, seed=0), ["dist_2", "unique_replies"])
    point = stats.point(["dist_2", "unique_replies"])
    assert replicates["dist_2"].mean() < point["dist_2"]  # the resampling artefact
    for metric in ("dist_2", "unique_replies"):
        low, high = percentile_interval(replicates[metric], point[metric])
        assert low < point[metric] < high


def test_identical_systems_have_zero_difference_and_p_one() -> None:
    examples = corpus(80)
    result = bootstrap_compare({"a": examples, "b": list(examples)}, baseline="b", metrics=list(metric_keys()))
    assert result.systems["b"].differences == {}  # the baseline itself
    for metric, diff in result.systems["a"].differences.items():
        assert diff.delta == 0.0 and diff.low == 0.0 and diff.high == 0.0, metric
        assert diff.p_value == 1.0, metric


def test_known_difference_is_detected() -> None:
    # the same 200 dialogues (joyful); system "good" always answers positively, "flat" half the time
    replies = {"good": [POSITIVE_REPLY] * 200, "flat": [POSITIVE_REPLY, NEUTRAL_REPLY] * 100}
    systems = {
        name: [ScoredExample(reply, "ref", "joyful", example_id=str(i)) for i, reply in enumerate(texts)]
        for name, texts in replies.items()
    }
    result = bootstrap_compare(systems, baseline="flat", metrics=["valence_agreement"], n_resamples=999)
    diff = result.systems["good"].differences["valence_agreement"]
    assert diff.delta == pytest.approx(0.5)
    assert 0.0 < diff.low < 0.5 < diff.high < 1.0
    # no resample moves Δ by 0.5 from its centre: the smallest p, 1 / (B + 1)
    assert diff.p_value == pytest.approx(1 / 1000)
    # paired: per example the difference is 0 or 1, so its spread is that of a share of 100 of 200
    assert (diff.high - diff.low) / 2 == pytest.approx(1.96 * math.sqrt(0.25 / 200), rel=0.1)


def test_small_difference_is_not_significant() -> None:
    # the systems differ on 2 of 300 examples (one each way): Δ = 0, nothing to detect
    base = corpus(300, seed=1)
    other = list(base)
    other[0] = ScoredExample(POSITIVE_REPLY, base[0].ref, "joyful", example_id=base[0].example_id)
    other[1] = ScoredExample(NEUTRAL_REPLY, base[1].ref, "joyful", example_id=base[1].example_id)
    diff = bootstrap_compare({"x": other, "base": base}, baseline="base", metrics=["avg_len"]).systems["x"]
    assert diff.differences["avg_len"].p_value > 0.05


def test_paired_difference_p_value_formula() -> None:
    # replicates of Δ centred at 0.1 with |Δ* - mean| = 0.05 for half of them, 0.25 for the other half
    system = np.array([0.15, 0.05, 0.35, -0.15])
    baseline = np.zeros(4)
    diff = paired_difference(system, baseline, 0.2, 0.0)
    # |Δ* - 0.1| = 0.05, 0.05, 0.25, 0.25 -> two are >= |Δ| = 0.2 -> p = (1 + 2) / (1 + 4)
    assert diff.p_value == pytest.approx(0.6)
    assert diff.delta == pytest.approx(0.2)


def test_formatting() -> None:
    assert Estimate(0.285, 0.270, 0.300).format("dist_2") == "0.285 [0.270, 0.300]"
    assert Difference(0.048, 0.030, 0.066, 0.000999).format() == "+0.048 [+0.030, +0.066] p=0.001"
    assert Difference(-2.0, -3.5, -0.5, 0.0001).format() == "-2.000 [-3.500, -0.500] p<0.001"
    assert Estimate(1798.0, 1769.4, 1831.0).format("unique_replies") == "1798 [1769, 1831]"
    assert Estimate(123.456, 120.0, 130.0).format("ppl") == "123.5 [120.0, 130.0]"


def test_subset_and_alignment_checks() -> None:
    examples = corpus(30)
    assert len(select_subset(examples, "feedback")) == 20  # i % 3 != 0
    with pytest.raises(ValueError, match="has_feedback"):
        select_subset([ScoredExample("a", "b", "sad")], "feedback")
    with pytest.raises(ValueError, match="subset"):
        select_subset(examples, "some")
    result = bootstrap_compare({"a": examples}, subset="feedback", metrics=["avg_len"], n_resamples=10)
    assert result.n_examples == 20 and result.subset == "feedback"
    with pytest.raises(ValueError, match="same test examples"):
        bootstrap_compare({"a": examples, "b": examples[:-1]})
    shuffled = [examples[1], examples[0], *examples[2:]]
    with pytest.raises(ValueError, match="example_id"):
        bootstrap_compare({"a": examples, "b": shuffled})
    with pytest.raises(ValueError, match="baseline"):
        bootstrap_compare({"a": examples}, baseline="b")
    with pytest.raises(ValueError, match="unknown metric"):
        bootstrap_compare({"a": examples}, metrics=["bleu"])


def test_compare_prediction_files(tmp_path: Path) -> None:
    examples = corpus(40)
    records = [PredictionRecord(e.emotion, ["ctx"], e.pred, e.ref, example_id=e.example_id) for e in examples]
    scores = [{"has_feedback": e.has_feedback, "nll_sum": e.nll_sum, "n_tokens": e.n_tokens} for e in examples]
    ours = tmp_path / "predictions.jsonl"
    write_scored_jsonl(ours, records, scores)
    assert read_scored_examples(ours) == [
        ScoredExample(e.pred, e.ref, e.emotion, None, e.nll_sum, e.n_tokens, e.has_feedback, e.example_id)
        for e in examples
    ]
    first = json.loads(ours.read_text().splitlines()[0])
    assert {"pred", "ref", "emotion", "context", "example_id", "has_feedback", "nll_sum", "n_tokens"} <= set(first)
    # a second system: the same examples, written without per-example scores (no ppl, no feedback flag)
    other = [PredictionRecord(r.emotion, r.context, POSITIVE_REPLY, r.ref, example_id=r.example_id) for r in records]
    theirs = tmp_path / "other.jsonl"
    write_scored_jsonl(theirs, other)
    result = compare_prediction_files({"ours": ours, "other": theirs}, baseline="other", n_resamples=200, seed=5)
    assert result.metrics == ["ppl", "dist_1", "dist_2", "bleu_4", "valence_agreement", "unique_replies"]
    assert "ppl" in result.systems["ours"].estimates and "ppl" not in result.systems["other"].estimates
    assert "ppl" not in result.systems["ours"].differences
    assert result.systems["other"].estimates["unique_replies"].value == 1
    again = compare_prediction_files({"ours": ours, "other": theirs}, baseline="other", n_resamples=200, seed=5)
    assert again.rows() == result.rows()  # seeded: the same numbers
    table = result.markdown()
    assert table.splitlines()[0].startswith("| system | n | ppl [95% CI] | Δ ppl vs other | dist_1 [95% CI] |")
    assert "| other | 40 | – | (baseline) |" in table
    assert " p=" in table or " p<" in table
    result.write_csv(tmp_path / "c.csv")
    header = (tmp_path / "c.csv").read_text().splitlines()[0]
    assert header == "system,metric,value,low,high,delta,delta_low,delta_high,p_value"
    cells = {tuple(line.split(",")[:2]): line.split(",")[2:] for line in (tmp_path / "c.csv").read_text().splitlines()}
    assert cells[("other", "unique_replies")][:3] == ["1", "1", "1"]  # a count as one, not 1.0
    assert json.loads(result.to_json())["n_resamples"] == 200
    assert examples_from_records(records, scores)[0] == read_scored_examples(ours)[0]
