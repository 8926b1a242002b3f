"""A small synthetic blind study for the human-evaluation tests (tests/evaluation/test_human_*.py)."""

from __future__ import annotations

from pathlib import Path

from empdg.config.human_eval_schema import HumanStudyConfig
from empdg.evaluation.human_export import export_study
from empdg.evaluation.release_format import PredictionRecord, write_jsonl

EMOTIONS = ("sad", "joyful", "afraid", "proud")


def export_synthetic_study(out: Path, n_systems: int = 3, n_examples: int = 16, **settings: object) -> Path:
    """``n_systems`` systems (``sys0``, ``sys1``...) answering the same ``n_examples`` dialogues over four
    emotions, exported with ``settings`` over 12 dialogues and a 0.25 share of attention checks; the study folder."""
    out.mkdir(parents=True, exist_ok=True)
    systems = {}
    for s in range(n_systems):
        records = [
            PredictionRecord(
                EMOTIONS[i % 4], [f"i feel {EMOTIONS[i % 4]} about thing {i} ."], f"sys{s} says {i}", f"gold reply {i}"
            )  # fmt: skip
            for i in range(n_examples)
        ]
        write_jsonl(out / f"sys{s}.jsonl", records)
        systems[f"sys{s}"] = str(out / f"sys{s}.jsonl")
    study = out / "study"
    export_study(systems, HumanStudyConfig(**{"n_dialogues": 12, "attention_share": 0.25, **settings}), study)
    return study
