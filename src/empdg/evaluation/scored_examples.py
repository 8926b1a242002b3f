"""Per-example evaluation records: what ``predictions.jsonl`` holds so that any test-set metric can be recomputed
on any resample of the examples (bootstrap confidence intervals, paired tests).

Each JSONL line is a :class:`~empdg.evaluation.release_format.PredictionRecord` (``emotion``, ``context``,
``pred``, ``ref``, ``emotion_context``, ``feedback``, ``example_id``, ``predicted_emotion``) plus, when known:

- ``has_feedback``: the turn is followed by a speaker utterance (the EmpDG paper's 2,713-turn subset);
- ``nll_sum``, ``n_tokens``: the model's unsmoothed NLL summed over the gold reply's tokens, and their count
  (teacher forcing; perplexity over a set of examples is ``exp(sum nll_sum / sum n_tokens)``);
- ``sim_reference``, ``sim_context``, ``reply_emotion``, ``reference_emotion``: the metrics that read meaning
  (:mod:`empdg.models.reply_meaning`), when the evaluation computed them.

``read_jsonl`` ignores the extra keys, so these files stay readable as plain prediction files.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from empdg.data.corpus_metrics import ScoredExample
from empdg.evaluation.prediction_record import DEFAULT_MAX_BYTES, read_lines
from empdg.evaluation.release_format import PredictionRecord, json_objects, read_predictions

__all__ = [
    "SUBSETS",
    "ScoredExample",
    "examples_from_records",
    "read_scored_examples",
    "select_subset",
    "write_scored_jsonl",
]

SUBSETS = ("all", "feedback")


def write_scored_jsonl(
    path: str | Path, records: Sequence[PredictionRecord], scores: Sequence[Mapping[str, Any]] = ()
) -> None:
    """One JSON object per record: the record's non-None fields, then ``scores[i]`` (``has_feedback``,
    ``nll_sum``, ``n_tokens``; None values omitted). ``scores`` may be empty (records only)."""
    if scores and len(scores) != len(records):
        raise ValueError(f"got {len(records)} records but {len(scores)} per-example scores")
    with Path(path).open("w", encoding="utf-8") as handle:
        for i, record in enumerate(records):
            obj = {key: value for key, value in dataclasses.asdict(record).items() if value is not None}
            if scores:
                obj.update({key: value for key, value in scores[i].items() if value is not None})
            handle.write(json.dumps(obj, ensure_ascii=False) + "\n")


def _feedback_flag(obj: Mapping[str, Any]) -> bool | None:
    if obj.get("has_feedback") is not None:
        return bool(obj["has_feedback"])
    feedback = obj.get("feedback")
    return None if feedback is None else bool(feedback)


def _example(obj: Mapping[str, Any]) -> ScoredExample:
    nll, tokens = obj.get("nll_sum"), obj.get("n_tokens")
    return ScoredExample(
        pred=str(obj["pred"]),
        ref=str(obj["ref"]),
        emotion=str(obj["emotion"]),
        predicted_emotion=obj.get("predicted_emotion"),
        nll_sum=None if nll is None else float(nll),
        n_tokens=None if tokens is None else int(tokens),
        has_feedback=_feedback_flag(obj),
        example_id=obj.get("example_id"),
        sim_reference=_optional_float(obj.get("sim_reference")),
        sim_context=_optional_float(obj.get("sim_context")),
        reply_emotion=obj.get("reply_emotion"),
        reference_emotion=obj.get("reference_emotion"),
    )


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def examples_from_records(
    records: Iterable[PredictionRecord], scores: Sequence[Mapping[str, Any]] = ()
) -> list[ScoredExample]:
    """In-memory records (and optional per-example scores) as :class:`ScoredExample` objects."""
    records = list(records)
    if scores and len(scores) != len(records):
        raise ValueError(f"got {len(records)} records but {len(scores)} per-example scores")
    return [
        _example({**dataclasses.asdict(record), **(dict(scores[i]) if scores else {})})
        for i, record in enumerate(records)
    ]


def read_scored_examples(
    path: str | Path, system: str | None = None, max_bytes: int | None = DEFAULT_MAX_BYTES
) -> list[ScoredExample]:
    """Read our ``predictions.jsonl`` (with its per-example scores) or any release-format / JSONL prediction
    file (``system``: one system of a multi-system release, as ``evaluate.system``); release files carry no
    NLL, and a feedback flag only when they have ``Feedback:`` lines. ``max_bytes``: see
    :func:`~empdg.evaluation.prediction_record.read_lines`."""
    path = Path(path)
    first = next((line.strip() for line in read_lines(path, max_bytes) if line.strip()), "")
    if not first.startswith("{"):
        return examples_from_records(read_predictions(path, system=system, max_bytes=max_bytes))
    return [_example(obj) for obj in json_objects(path, ("emotion", "pred", "ref"), max_bytes)]


def select_subset(examples: Sequence[ScoredExample], subset: str) -> list[ScoredExample]:
    """``all``: every example; ``feedback``: those with ``has_feedback`` (error when the flag is unknown)."""
    if subset not in SUBSETS:
        raise ValueError(f"subset={subset!r} must be one of {SUBSETS}")
    if subset == "all":
        return list(examples)
    if any(example.has_feedback is None for example in examples):
        raise ValueError(
            "subset='feedback' needs the per-example feedback flag (has_feedback), which these predictions lack"
        )
    return [example for example in examples if example.has_feedback]
