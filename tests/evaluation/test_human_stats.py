"""Human-evaluation statistics against values worked out by hand on tiny annotation sets."""

from __future__ import annotations

import math

import pytest

from empdg.evaluation.human_stats import (
    PairJudgment,
    RatingJudgment,
    bradley_terry,
    fleiss_kappa,
    krippendorff_alpha,
    rating_means,
    win_tie_loss,
)


def _pair(dialogue: str, first: str, second: str, outcome: int, annotator: str = "a") -> PairJudgment:
    return PairJudgment(dialogue, annotator, "empathy", first, second, outcome)


def test_win_tie_loss_counts_each_judgment_from_the_first_systems_side() -> None:
    # X vs Y: X wins twice (once written as Y-vs-X with Y losing), ties once, loses once -> 2/4, 1/4, 1/4
    judgments = [_pair("d1", "X", "Y", 1), _pair("d1", "Y", "X", -1), _pair("d2", "X", "Y", 0),
                 _pair("d2", "X", "Y", -1), _pair("d2", "X", "Z", 1)]  # fmt: skip
    rates, n = win_tie_loss(judgments, "X", "Y", ["d1", "d2"], n_resamples=200, seed=0)
    assert n == 4
    assert (rates["win"].value, rates["tie"].value, rates["loss"].value) == (0.5, 0.25, 0.25)
    for estimate in rates.values():
        assert estimate.low <= estimate.value <= estimate.high
    reverse, _ = win_tie_loss(judgments, "Y", "X", ["d1", "d2"], n_resamples=200, seed=0)
    assert (reverse["win"].value, reverse["loss"].value) == (0.25, 0.5)


def test_a_system_that_always_wins_has_a_degenerate_interval() -> None:
    judgments = [_pair(f"d{i}", "X", "Y", 1) for i in range(5)]
    rates, _ = win_tie_loss(judgments, "X", "Y", [f"d{i}" for i in range(5)], n_resamples=100)
    assert (rates["win"].value, rates["win"].low, rates["win"].high) == (1.0, 1.0, 1.0)
    assert rates["loss"].value == 0.0


def test_bradley_terry_two_systems_is_the_log_odds_of_winning() -> None:
    # A beats B 3 times out of 4: P = 1 / (1 + exp(θB - θA)) = 3/4 -> θA - θB = log 3, centred: ±log(3)/2
    judgments = [_pair("d1", "A", "B", 1), _pair("d2", "A", "B", 1), _pair("d3", "B", "A", -1),
                 _pair("d4", "A", "B", -1)]  # fmt: skip
    theta = bradley_terry(judgments, ["A", "B"], ["d1", "d2", "d3", "d4"], alpha=0.0, n_resamples=50)
    assert theta["A"].value == pytest.approx(math.log(3) / 2, abs=1e-6)
    assert theta["B"].value == pytest.approx(-math.log(3) / 2, abs=1e-6)


def test_bradley_terry_a_tie_is_half_a_win_each_way() -> None:
    # 1 win + 2 ties for A out of 3 = 2 "wins" of 3: θA - θB = log(2/1)
    judgments = [_pair("d1", "A", "B", 1), _pair("d2", "A", "B", 0), _pair("d3", "A", "B", 0)]
    theta = bradley_terry(judgments, ["A", "B"], ["d1", "d2", "d3"], alpha=0.0, n_resamples=50)
    assert theta["A"].value - theta["B"].value == pytest.approx(math.log(2), abs=1e-6)


def test_bradley_terry_recovers_a_known_order_over_three_systems() -> None:
    judgments = []
    for first, second, wins, games in (("A", "B", 8, 10), ("B", "C", 7, 10), ("A", "C", 9, 10)):
        judgments += [_pair(f"{first}{second}{i}", first, second, 1 if i < wins else -1) for i in range(games)]
    dialogues = sorted({j.dialogue for j in judgments})
    theta = bradley_terry(judgments, ["C", "A", "B"], dialogues, alpha=0.01, n_resamples=200)
    assert theta["A"].value > theta["B"].value > theta["C"].value
    assert sum(e.value for e in theta.values()) == pytest.approx(0.0, abs=1e-9)
    assert all(e.low < e.value < e.high for e in theta.values())
    assert theta["A"].low > theta["C"].high  # 9 wins of 10 and 7 of 10 through B: apart at 95%
    empty = bradley_terry([], ["A", "B"], ["d1"], n_resamples=10)
    assert all(math.isnan(v) for e in empty.values() for v in (e.value, e.low, e.high))


def test_bradley_terry_interval_resamples_dialogues_not_judgments() -> None:
    # every dialogue: A wins 3 of its 4 judgments. Any resample of dialogues keeps the share at 3/4, so the
    # interval is the point (log 3 / 2); resampling single judgments would have spread it
    judgments = []
    for d in ("d1", "d2", "d3"):
        judgments += [_pair(d, "A", "B", 1, annotator=a) for a in ("a", "b", "c")] + [_pair(d, "A", "B", -1, "d")]
    theta = bradley_terry(judgments, ["A", "B"], ["d1", "d2", "d3"], alpha=0.0, n_resamples=100)
    assert (theta["A"].low, theta["A"].value, theta["A"].high) == pytest.approx((math.log(3) / 2,) * 3, abs=1e-6)
    # a dialogue that B wins outright widens it
    judgments += [_pair("d4", "A", "B", -1, annotator=a) for a in ("a", "b", "c", "d")]
    theta = bradley_terry(judgments, ["A", "B"], ["d1", "d2", "d3", "d4"], alpha=0.0, n_resamples=100)
    assert theta["A"].value == pytest.approx(math.log(9 / 7) / 2, abs=1e-6)  # 9 wins of 16
    assert theta["A"].low < theta["A"].value < theta["A"].high


def test_rating_means_and_a_constant_systems_interval() -> None:
    judgments = [RatingJudgment("d1", "a", "empathy", "X", 4), RatingJudgment("d1", "b", "empathy", "X", 5),
                 RatingJudgment("d2", "a", "empathy", "X", 3), RatingJudgment("d1", "a", "empathy", "Y", 2),
                 RatingJudgment("d2", "a", "empathy", "Y", 2)]  # fmt: skip
    means = rating_means(judgments, ["X", "Y"], ["d1", "d2"], n_resamples=200)
    x, n_x = means["X"]
    assert (x.value, n_x) == (4.0, 3)  # (4 + 5 + 3) / 3
    assert x.low <= 4.0 <= x.high and x.high > x.low
    y, _ = means["Y"]
    assert (y.value, y.low, y.high) == (2.0, 2.0, 2.0)


def test_krippendorff_alpha_is_one_under_perfect_agreement() -> None:
    units = {"r1": {"a": 1, "b": 1, "c": 1}, "r2": {"a": 4, "b": 4}, "r3": {"a": 5, "c": 5}}
    assert krippendorff_alpha(units, "ordinal") == pytest.approx(1.0)


def test_krippendorff_alpha_ordinal_hand_worked() -> None:
    # units (1,1), (2,2), (1,2): coincidences o11 = o22 = 2, o12 = o21 = 1; n1 = n2 = 3, n = 6.
    # ordinal δ²(1,2) = (n1 + n2 - (n1 + n2)/2)² = 9; D_o = (1·9 + 1·9)/6 = 3; D_e = (3·3·9·2)/(6·5) = 5.4
    # α = 1 - 3/5.4 = 4/9
    units = {"u1": {"a": 1, "b": 1}, "u2": {"a": 2, "b": 2}, "u3": {"a": 1, "b": 2}}
    assert krippendorff_alpha(units, "ordinal") == pytest.approx(4 / 9)


def test_krippendorff_alpha_is_undefined_without_two_values_or_overlap() -> None:
    assert math.isnan(krippendorff_alpha({"u1": {"a": 3, "b": 3}, "u2": {"a": 3, "b": 3}}))
    assert math.isnan(krippendorff_alpha({"u1": {"a": 3}, "u2": {"b": 4}}))


def test_fleiss_kappa_hand_worked() -> None:
    # 4 tasks × 3 annotators over A/B/tie: (3,0,0) (0,3,0) (2,1,0) (1,0,2)
    # P_i = (Σ n_ij² - 3)/6 = 1, 1, 1/3, 1/3 -> P̄ = 2/3; p = (6, 4, 2)/12 -> P_e = 1/4 + 1/9 + 1/36 = 7/18
    # κ = (2/3 - 7/18) / (1 - 7/18) = 5/11
    choices = {"t1": ["A", "A", "A"], "t2": ["B", "B", "B"], "t3": ["A", "A", "B"], "t4": ["tie", "tie", "A"],
               "t5": ["A", "B"]}  # fmt: skip
    kappa, items, raters = fleiss_kappa(choices, ("A", "B", "tie"))
    assert kappa == pytest.approx(5 / 11)
    assert (items, raters) == (4, 3)  # t5 has 2 answers, not the common 3: left out


def test_fleiss_kappa_is_one_under_perfect_agreement_and_nan_without_pairs() -> None:
    kappa, _, _ = fleiss_kappa({"t1": ["A", "A"], "t2": ["B", "B"], "t3": ["tie", "tie"]}, ("A", "B", "tie"))
    assert kappa == pytest.approx(1.0)
    assert math.isnan(fleiss_kappa({"t1": ["A"]}, ("A", "B", "tie"))[0])
