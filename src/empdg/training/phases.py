"""The training phases of one run and their step budgets.

EmpDG trains in phases: generator pre-training (MLE), critic pre-training against the frozen
generator, then joint adversarial training. Each phase has its own budget of updates; the run
moves to the next phase when a budget is spent and stops after the last one. The budgets are
checked where they are configured (empdg.config.schema.PhaseBudgets).
"""

from __future__ import annotations

from collections.abc import Mapping

from empdg.config.schema import PHASES

__all__ = ["PHASES", "PhaseSchedule"]


class PhaseSchedule:
    def __init__(self, budgets: Mapping[str, int]) -> None:
        """``budgets``: updates per phase; a phase that is absent (or 0) is skipped."""
        self.budgets = {name: int(budgets.get(name, 0) or 0) for name in PHASES}
        self.done = {name: 0 for name in PHASES}

    @property
    def current(self) -> str | None:
        """The first phase whose budget is not yet spent, or None when training is over."""
        for name in PHASES:
            if self.done[name] < self.budgets[name]:
                return name
        return None

    def advance(self, phase: str) -> None:
        self.done[phase] += 1

    @property
    def total_done(self) -> int:
        return sum(self.done.values())

    def state_dict(self) -> dict[str, int]:
        return dict(self.done)

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        self.done = {name: int(state.get(name, 0)) for name in PHASES}
