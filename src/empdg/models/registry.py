"""Which generator class serves ``model.name``, and building one from the ``model`` config group.

A generator class registers the names it serves with :func:`register_generator`; one class may serve
several names that are switch settings of it (EmpDG serves ``empdg``, ``transformer`` and
``emoprepend``). In-tree models are found by importing every module of :mod:`empdg.models` once, so
adding one needs no list to edit; an out-of-tree model registers when its own module is imported.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from empdg.errors import ConfigError
from empdg.models.base import Generator
from empdg.models.settings import GeneratorSettings

G = TypeVar("G", bound=type[Generator])

#: keys of the model group that describe the run, not the generator's architecture
RUN_KEYS = ("name", "embeddings", "init_from")

_GENERATORS: dict[str, type[Generator]] = {}
_discovered = False


def register_generator(*names: str) -> Callable[[G], G]:
    """Class decorator: ``cls`` serves ``model.name`` values ``names``."""
    if not names:
        raise ValueError("register_generator needs at least one model name")

    def register(cls: G) -> G:
        if not (isinstance(cls, type) and issubclass(cls, Generator)):
            raise TypeError(f"{cls!r} must subclass empdg.models.base.Generator to be registered")
        settings_class = getattr(cls, "settings_class", None)
        if not (isinstance(settings_class, type) and issubclass(settings_class, GeneratorSettings)):
            raise TypeError(
                f"{cls.__name__} must name its settings dataclass (a GeneratorSettings subclass) in `settings_class`"
            )
        for name in names:
            other = _GENERATORS.get(name)
            if other is not None and (other.__module__, other.__qualname__) != (cls.__module__, cls.__qualname__):
                raise ValueError(f"model name {name!r} is already registered by {other.__module__}.{other.__name__}")
        for name in names:  # a re-imported module replaces its own registration
            _GENERATORS[name] = cls
        return cls

    return register


def _discover() -> None:
    """Import every module of the models package once: in-tree generators register themselves."""
    global _discovered
    if _discovered:
        return
    import empdg.models as package

    for module in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        importlib.import_module(module.name)
    _discovered = True


def registered_generators() -> dict[str, type[Generator]]:
    """Every registered ``model.name`` and its class, sorted by name."""
    _discover()
    return dict(sorted(_GENERATORS.items()))


def generator_class(name: str) -> type[Generator]:
    """The class serving ``model.name``; an unknown name is an error listing the choices."""
    generators = registered_generators()
    if name not in generators:
        raise ConfigError(f"model.name={name!r} is not a registered generator; choose one of {sorted(generators)}")
    return generators[name]


def build_generator(model: Mapping[str, Any], vocab_size: int) -> Generator:
    """The generator the ``model`` config group describes (run-level keys are skipped), untrained."""
    settings = model_settings(model)
    return generator_class(str(model["name"]))(settings, vocab_size)


def model_settings(model: Mapping[str, Any]) -> GeneratorSettings:
    """The checked settings of the generator the ``model`` group names (no weights, no files read)."""
    if "name" not in model:
        raise ConfigError(f"model.name is missing; choose one of {sorted(registered_generators())}")
    cls = generator_class(str(model["name"]))
    return cls.settings_class.from_mapping({k: v for k, v in model.items() if k not in RUN_KEYS})
