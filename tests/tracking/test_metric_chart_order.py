"""The MLflow UI shows the generator's training losses first, then the validation metrics (issue #24)."""

from __future__ import annotations

import csv
from collections.abc import Iterable

#: the generator's own training metrics: the only ones allowed in the first group the UI shows
GENERATOR_TRAINING = {
    "train/loss",
    "train/nll",
    "train/emotion_ce",
    "train/g_grad_norm",
    "train/lr",
    "train/phase",
    "train/skipped_nonfinite",
}


def ui_chart_groups(names: Iterable[str]) -> list[tuple[str, list[str]]]:
    """Chart sections in the order the MLflow UI (3.x) draws them, each with its charts in order.

    As ``getBaseChartAndSectionConfigs`` in the UI's JS bundle does, on the run page and in the chart
    view alike: a metric's section is its name before the last '/', sections are sorted by name, the
    ungrouped metrics ('' here) come last, and the charts inside a section are sorted by name.
    """
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(name.rpartition("/")[0], []).append(name)
    order = sorted(g for g in groups if g) + ([""] if "" in groups else [])
    return [(group, sorted(groups[group])) for group in order]


def test_ui_chart_groups_is_the_ui_rule():
    names = ["b/x", "epoch", "a/z", "a/y", "a/b/c"]
    assert ui_chart_groups(names) == [("a", ["a/y", "a/z"]), ("a/b", ["a/b/c"]), ("b", ["b/x"]), ("", ["epoch"])]


def test_an_adversarial_run_shows_train_then_val_first_in_the_mlflow_ui(compose_train, tmp_path):
    from empdg.training.run import run_training

    cfg = compose_train(
        "training.phases.generator_pretrain=2",
        "training.phases.critic_pretrain=2",
        "training.phases.adversarial=2",
        "adversarial.probe_every=1",
        "trainer.val_check_interval=3",
        "training.sample_generations=0",
        "logger=csv",  # the names MLflow would get, without the seconds of creating an MLflow store
    )
    run_training(cfg)
    with next(tmp_path.rglob("metrics.csv")).open(newline="") as rows:
        names = set(next(csv.reader(rows))) - {"step"}  # "step" is the CSV's x axis, not a metric
    groups = ui_chart_groups(names)
    (first, first_charts), (second, _) = groups[:2]
    assert first == "train" and "train/loss" in first_charts, groups
    assert set(first_charts) <= GENERATOR_TRAINING, first_charts
    assert second == "val", groups
    # the run logged every kind of metric: the game's, the critic report's, the throughput's
    assert {"train/loss", "val/ppl", "wgan/d_loss", "wgan/g_adv", "wgan/critic/sem_gold_beats_greedy"} <= names
    assert any(name.startswith("wallclock/") for name in names), sorted(names)
