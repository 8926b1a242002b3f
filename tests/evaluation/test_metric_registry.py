"""A new metric is one class in one place: registered here, a test-only metric is in validation's logged
figures, in the evaluation's ``metrics.json`` and in the bootstrap's table, with the same value everywhere."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from empdg.data.corpus_metrics import METRICS, ScoredExample, SummedMetric, metric_keys, register_metric


class QuestionShare(SummedMetric):
    """Share (0..1) of replies that end with a question mark; test-only."""

    name = "question_share"
    keys = validation_keys = ("question_share",)

    def row(self, example: ScoredExample) -> Sequence[float]:
        return (example.pred.rstrip().endswith("?"),)

    def from_sums(self, sums: np.ndarray, size: np.ndarray) -> dict[str, np.ndarray]:
        return {"question_share": sums[:, 0] / size}


@pytest.fixture
def question_share() -> Iterator[QuestionShare]:
    metric = register_metric(QuestionShare())
    yield metric
    del METRICS[metric.name]


def test_a_registered_metric_is_computed_by_validation_evaluation_and_bootstrap(
    question_share, compose_train, tmp_path: Path
) -> None:
    from empdg.config import compose
    from empdg.evaluation.bootstrap import compare_prediction_files
    from empdg.evaluation.pipeline import run_evaluation
    from empdg.training.run import run_training

    assert metric_keys()[-1] == "question_share"
    logged = run_training(
        compose_train(
            "training.phases.generator_pretrain=2",
            "training.phases.critic_pretrain=0",
            "training.phases.adversarial=0",
            "trainer.val_check_interval=2",
        )
    )
    assert 0.0 <= logged["val/greedy_question_share"] <= 1.0  # validation: its greedy replies

    checkpoint = next((tmp_path / "run").glob("checkpoints/last.ckpt"))
    paths = [f"paths.root_dir={tmp_path}", f"paths.output_dir={tmp_path / 'evaluation'}"]
    metrics = run_evaluation(
        compose("evaluate", [f"ckpt_path={checkpoint}", "logger=none", "evaluate.meaning=false", *paths])
    )
    predictions = next((tmp_path / "evaluation").glob("**/predictions.jsonl"))
    replies = [json.loads(line)["pred"] for line in predictions.read_text().splitlines()]
    # the evaluation: its metrics.json, hand-counted from the replies it wrote
    assert metrics["question_share"] == sum(reply.endswith("?") for reply in replies) / len(replies)
    assert json.loads((predictions.parent / "metrics.json").read_text())["question_share"] == metrics["question_share"]

    # the bootstrap's table: the same value from the same statistics, with an interval
    comparison = compare_prediction_files({"tiny": predictions}, metrics=["question_share"], n_resamples=50)
    estimate = comparison.systems["tiny"].estimates["question_share"]
    assert estimate.value == metrics["question_share"]
    assert estimate.low <= estimate.value <= estimate.high
    assert "question_share [95% CI]" in comparison.markdown()


def test_without_registration_it_is_nowhere() -> None:
    from empdg.evaluation.bootstrap import bootstrap_compare

    assert "question_share" not in metric_keys()
    with pytest.raises(ValueError, match="unknown metric"):
        bootstrap_compare({"a": [ScoredExample("why ?", "ok", "sad")]}, metrics=["question_share"])
