"""Typed model settings: the ``model`` config group, minus the run-level keys, as a dataclass.

Every generator names a settings dataclass (``settings_class``); the shared base,
:class:`GeneratorSettings`, holds the sizes every transformer generator has. ``from_mapping`` is
strict: an unknown key or a value of the wrong type is an error naming ``model.<key>`` -- a typo
must never fall back silently to a default.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from empdg.errors import ConfigError

S = TypeVar("S", bound="GeneratorSettings")


@dataclass
class GeneratorSettings:
    """Sizes every transformer generator has; the defaults are EmpDG's paper sizes (MoEL's code).

    ``copy`` adds a pointer-generator over context words (a generator without one refuses it);
    ``tie_embeddings`` shares the word embedding with the output layer.
    """

    emb_dim: int = 300
    hidden_dim: int = 300
    num_layers: int = 1
    num_heads: int = 2
    attn_dim: int = 40
    ff_dim: int = 50
    input_dropout: float = 0.0
    dropout: float = 0.0
    attention_dropout: float = 0.0
    max_positions: int = 1024
    num_emotions: int = 32
    tie_embeddings: bool = False
    copy: bool = False

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ConfigError("invalid model configuration: " + "; ".join(problems))

    def problems(self) -> list[str]:
        """What is impossible in these settings; subclasses extend the list with their own checks."""
        problems = [
            f"model.{name}={getattr(self, name)} must be >= 1"
            for name in ("emb_dim", "hidden_dim", "num_layers", "num_heads", "attn_dim", "ff_dim", "max_positions")
            if getattr(self, name) < 1
        ]
        problems += [
            f"model.{name}={getattr(self, name)} must be in [0, 1)"
            for name in ("input_dropout", "dropout", "attention_dropout")
            if not 0.0 <= getattr(self, name) < 1.0
        ]
        if self.num_emotions < 2:
            problems.append(f"model.num_emotions={self.num_emotions} must be >= 2")
        if problems:  # the divisibility checks below would divide by zero
            return problems
        if self.hidden_dim % self.num_heads or self.attn_dim % self.num_heads:
            problems.append(
                f"model.hidden_dim={self.hidden_dim} and model.attn_dim={self.attn_dim} "
                f"must be divisible by model.num_heads={self.num_heads}"
            )
        if self.tie_embeddings and self.emb_dim != self.hidden_dim:
            problems.append("model.tie_embeddings=true needs model.emb_dim == model.hidden_dim")
        return problems

    @classmethod
    def from_mapping(cls: type[S], values: Mapping[str, Any]) -> S:
        """Build from the ``model`` group's generator keys; unknown keys and wrong types are errors."""
        hints = typing.get_type_hints(cls)
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = [f"model.{key}" for key in values if key not in hints]
        problems = [f"unknown key {', '.join(unknown)} (valid keys: {', '.join(known)})"] if unknown else []
        checked = {}
        for key, value in values.items():
            if key in hints:
                try:
                    checked[key] = _typed(value, hints[key])
                except TypeError:
                    problems.append(f"model.{key}={value!r} must be {_describe(hints[key])}")
        if problems:
            raise ConfigError("invalid model configuration: " + "; ".join(problems))
        return cls(**checked)


def _typed(value: Any, hint: Any) -> Any:
    """``value`` if it fits ``hint`` (an int where a float is expected becomes a float); else TypeError."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is not type(None):
                try:
                    return _typed(value, option)
                except TypeError:
                    pass
        raise TypeError(hint)
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    elif origin in (tuple, list):
        if isinstance(value, (list, tuple)):
            return origin(value)
    else:
        return value  # a type this check does not know: the dataclass's own checks decide
    raise TypeError(hint)


def _describe(hint: Any) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe(option) for option in typing.get_args(hint))
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null"}
    return names.get(hint, str(hint))
