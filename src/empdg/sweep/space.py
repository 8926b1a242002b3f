"""The search space as data: config keys, types and ranges from ``sweep.space``.

Keeping the space in YAML (not in code) means a study is reproducible from its config alone, and
each sampled value becomes a plain Hydra override, so the best trial can be re-run with train.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna

TYPES = ("float", "int", "categorical")
_PLAIN = re.compile(r"^[A-Za-z_][\w\-./]*$")


@dataclass(frozen=True)
class ParamSpec:
    """One hyper-parameter: its Optuna name, the training config key it sets and its range."""

    name: str
    key: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()
    grid: tuple[Any, ...] = ()

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.type == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.type == "int":
            step = int(self.step) if self.step else 1
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=step, log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), step=self.step, log=self.log)

    def grid_values(self) -> list[Any]:
        """The values a grid sampler visits: explicit ``grid``, ``choices``, or an int/float range with a step."""
        if self.grid:
            return list(self.grid)
        if self.type == "categorical":
            return list(self.choices)
        if self.type == "int":
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.step:
            count = int(round((float(self.high) - float(self.low)) / float(self.step)))
            return [round(float(self.low) + i * float(self.step), 12) for i in range(count + 1)]
        raise ValueError(f"sweep.space.{self.name}: a grid sampler needs `grid: [...]` or a `step` for a float range")


def parse_space(space: Mapping[str, Mapping[str, Any]]) -> list[ParamSpec]:
    """Check the space before the study starts: a typo must not cost a night of failed trials."""
    if not space:
        raise ValueError("sweep.space is empty: nothing to search")
    specs = []
    for name, entry in space.items():
        entry = dict(entry)
        kind = str(entry.get("type", ""))
        where = f"sweep.space.{name}"
        if kind not in TYPES:
            raise ValueError(f"{where}.type={kind!r}; use one of {TYPES}")
        if not entry.get("key"):
            raise ValueError(f"{where}.key is missing (the training config key this parameter sets)")
        if kind == "categorical":
            if not entry.get("choices"):
                raise ValueError(f"{where}: a categorical parameter needs `choices: [...]`")
        else:
            if entry.get("low") is None or entry.get("high") is None:
                raise ValueError(f"{where}: a {kind} parameter needs low and high")
            if float(entry["low"]) > float(entry["high"]):
                raise ValueError(f"{where}: low > high")
            if entry.get("log") and (entry.get("step") or float(entry["low"]) <= 0):
                raise ValueError(f"{where}: log scale needs low > 0 and no step")
        specs.append(
            ParamSpec(
                name=str(name),
                key=str(entry["key"]),
                type=kind,
                low=entry.get("low"),
                high=entry.get("high"),
                log=bool(entry.get("log", False)),
                step=entry.get("step"),
                choices=tuple(entry.get("choices") or ()),
                grid=tuple(entry.get("grid") or ()),
            )
        )
    return specs


def grid_search_space(specs: Iterable[ParamSpec]) -> dict[str, list[Any]]:
    return {spec.name: spec.grid_values() for spec in specs}


def format_value(value: Any) -> str:
    """A value as Hydra's override grammar reads it back unchanged (floats keep full precision)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in ("true", "false", "null"):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def to_overrides(specs: Sequence[ParamSpec], values: Mapping[str, Any]) -> list[str]:
    return [f"{spec.key}={format_value(values[spec.name])}" for spec in specs if spec.name in values]


def override_key(override: str) -> str:
    """``++a.b=1`` -> ``a.b``: what an override targets, to drop earlier ones for the same key."""
    key = override.split("=", 1)[0]
    return key.lstrip("+~")


def merge_overrides(*groups: Iterable[str]) -> list[str]:
    """Concatenate override lists; for a key given twice only the last one stays (in its place)."""
    merged: dict[str, str] = {}
    for group in groups:
        for override in group:
            key = override_key(override)
            merged.pop(key, None)
            merged[key] = override
    return list(merged.values())


def forwarded_overrides(task_overrides: Iterable[str]) -> list[str]:
    """The command-line overrides of sweep.py that configure training (not the study, not Hydra)."""
    kept = []
    for override in task_overrides:
        key = override_key(override)
        if key == "sweep" or key.startswith(("sweep.", "sweep/", "hydra.")):
            continue
        kept.append(override)
    return kept
