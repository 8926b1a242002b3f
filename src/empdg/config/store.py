"""Hydra structured configs: the typed schemas every config group is checked against.

``register_configs`` puts each schema in Hydra's ConfigStore; the YAML files of a group name their
schema in their defaults list, so a wrong type or an unknown key fails while Hydra composes,
naming the key. It runs when :mod:`empdg.config` is imported (every command and ``compose`` do).
"""

from __future__ import annotations

_registered = False


def register_configs() -> None:
    """Register every schema once (idempotent; a model registered later is added by calling it again)."""
    global _registered
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    _register_model_schemas(store)
    _register_run_schemas(store)
    _registered = True


def _register_model_schemas(store) -> None:
    """One ``schema/model/<name>`` per registered generator (empdg.config.model_schema)."""
    try:
        from empdg.config.model_schema import register_model_schemas
    except ImportError:  # not written yet
        return
    register_model_schemas(store)


def _register_run_schemas(store) -> None:
    """Schemas of the adversarial, training, optim and data groups (empdg.config.schema)."""
    try:
        from empdg.config.schema import register_run_schemas
    except ImportError:  # not written yet
        return
    register_run_schemas(store)
    from empdg.config.human_eval_schema import register_human_eval_schemas

    register_human_eval_schemas(store)
