"""``logger.name``'s rule, apart from the loggers themselves (which import Lightning and MLflow), so training's
settings checks can name an unknown logger without importing either."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: ``logger.name``s :func:`empdg.tracking.resilient_logger.build_logger` knows (the ``logger`` group's options)
LOGGER_NAMES = ("mlflow", "csv", "none")


def logger_problems(logger_cfg: Mapping[str, Any]) -> list[str]:
    """An unknown ``logger.name``, named before any data is read (training's ``validate_config``)."""
    name = logger_cfg.get("name")
    if name in LOGGER_NAMES:
        return []
    return [f"logger.name={name!r} is unknown; use logger=mlflow, logger=csv or logger=none"]
