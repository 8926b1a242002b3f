"""The evaluation's metrics.md: the paper's order, the meaning metrics beside the other reply metrics, then the rest."""

from __future__ import annotations

from empdg.evaluation.reports import metrics_markdown


def test_rows_follow_the_papers_order_with_the_meaning_metrics_before_the_count() -> None:
    metrics = {"zeta_extra": 1.0, "n_examples": 3, "reply_emotion_acc": 0.5, "sim_reference": 0.25, "ppl": 80.0}
    table = metrics_markdown(metrics, "test", "all", "x.ckpt")
    rows = [line.split(" | ")[0].removeprefix("| ") for line in table.splitlines() if line.startswith("| ")][1:]
    assert rows == ["ppl", "sim_reference", "reply_emotion_acc", "n_examples", "zeta_extra"]
