"""Classes registered by name: the critics (``adversarial.critics``) and the estimators (``adversarial.estimator``).

Each registry holds classes of one base, keyed by their ``name`` class attribute, in registration order
(the built-ins first); a registered class is the choice of a config value, and looking a name up gives
a fresh instance. Re-importing a module replaces its own registration; another class taking a name fails.
"""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class RuleRegistry(Generic[T]):
    """Subclasses of ``base`` by name; ``what`` names them in errors ("critic", "estimator")."""

    def __init__(self, base: type[T], what: str, attributes: tuple[str, ...] = ("name",)) -> None:
        self.base, self.what, self.attributes = base, what, attributes
        self._classes: dict[str, type[T]] = {}

    def register(self, cls: type[T]) -> type[T]:
        """Register ``cls`` under ``cls.name``, after checking it sets every string attribute the rules need."""
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise TypeError(f"{cls!r} must subclass {self.base.__name__} to be registered")
        for attribute in self.attributes:
            if not isinstance(getattr(cls, attribute, None), str):
                raise TypeError(f"{cls.__name__} must set the class attribute `{attribute}` (a string)")
        other = self._classes.get(cls.name)
        if other is not None and (other.__module__, other.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ValueError(f"{self.what} {cls.name!r} is already registered by {other.__module__}.{other.__name__}")
        self._classes[cls.name] = cls
        return cls

    def names(self) -> tuple[str, ...]:
        return tuple(self._classes)

    def classes(self) -> list[type[T]]:
        return list(self._classes.values())

    def get(self, name: str) -> T:
        """An instance of the class registered as ``name``; an unknown name fails with the choices."""
        try:
            return self._classes[name]()
        except KeyError:
            raise ValueError(f"unknown {self.what} {name!r}; choose one of {list(self._classes)}") from None
