"""Typed schemas of the human-evaluation commands: ``study.*`` (``empdg-human-export``) and ``report.*``
(``empdg-human-report``).

Registered in Hydra's ConfigStore under ``schema/human_study`` and ``schema/human_report`` and named in the
defaults lists of ``conf/human_export.yaml`` and ``conf/human_report.yaml``: an unknown key or a wrong type
fails while Hydra composes, naming the key; impossible values are each class's ``__post_init__``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from empdg.config.schema import _at_least, _fraction, _positive, _raise_if

__all__ = ["HumanReportConfig", "HumanStudyConfig", "register_human_eval_schemas"]


@dataclass
class HumanStudyConfig:
    """What a blind study holds (:mod:`empdg.evaluation.human_export`)."""

    n_dialogues: int = 60  # dialogues drawn, stratified by gold emotion; every system answers each
    seed: int = 0  # the draw, the opaque ids, left/right and the task order
    attention_share: float = 0.1  # attention checks per pairwise task and per rating task (docs/human_evaluation.md)
    pairwise: bool = True  # A/B tasks: every pair of systems on every dialogue
    ratings: bool = True  # 1-5 ratings of every system's reply on every dialogue
    max_file_mb: float = 64.0  # prediction files larger than this are refused

    def __post_init__(self) -> None:
        problems = _at_least("study.n_dialogues", self.n_dialogues, 1)
        problems += _fraction("study.attention_share", self.attention_share)
        problems += _positive("study.max_file_mb", self.max_file_mb)
        if not (self.pairwise or self.ratings):
            problems.append("study.pairwise=false and study.ratings=false: the study would hold no task")
        _raise_if("study", problems)


@dataclass
class HumanReportConfig:
    """How annotations are summarised (:mod:`empdg.evaluation.human_stats`)."""

    n_bootstrap: int = 1000  # resamples of the dialogues for the intervals
    seed: int = 0
    confidence: float = 0.95
    min_attention_pass: float = 0.8  # an annotator passing fewer of their attention checks is flagged
    exclude_flagged: bool = True  # and left out of every statistic (counted in the report either way)
    bt_alpha: float = 0.01  # L2 regularisation of the Bradley-Terry fit (finite strengths when a system never loses)
    max_file_mb: float = 64.0  # annotation files larger than this are refused

    def __post_init__(self) -> None:
        problems = _at_least("report.n_bootstrap", self.n_bootstrap, 1)
        if not 0.0 < self.confidence < 1.0:
            problems.append(f"report.confidence={self.confidence} must be in (0, 1)")
        if not 0.0 <= self.min_attention_pass <= 1.0:
            problems.append(f"report.min_attention_pass={self.min_attention_pass} must be in [0, 1]")
        problems += _at_least("report.bt_alpha", self.bt_alpha, 0.0)
        problems += _positive("report.max_file_mb", self.max_file_mb)
        _raise_if("report", problems)


def register_human_eval_schemas(store: Any) -> None:
    """Store the schemas ``human_export.yaml`` and ``human_report.yaml`` name in their defaults lists."""
    store.store(group="schema/human_study", name="default", node=HumanStudyConfig)
    store.store(group="schema/human_report", name="default", node=HumanReportConfig)
