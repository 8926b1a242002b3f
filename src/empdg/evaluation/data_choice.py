"""Which data an evaluation reads: *what* from the checkpoint's run, *where* from this command line.

A run folder may come from anyone (a shared disk, a downloaded archive), and the data cache is
loaded from ``data.cache_dir``: a stored run config is trusted for the dataset and its settings,
never for a location.
"""

from __future__ import annotations

import logging
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from empdg.config import CONFIG_DIR, compose
from empdg.errors import ConfigError
from empdg.training.checkpoint import LoadedCheckpoint

log = logging.getLogger(__name__)

#: data keys that say where (or how, on this machine) files are read or fetched. A run folder may
#: come from anyone, and the data cache is loaded from ``cache_dir``: these never come from a stored
#: run config, only from this command line or the defaults.
MACHINE_KEYS = frozenset({"root", "cache_dir", "url", "download", "num_workers", "path", "dir", "file"})
MACHINE_SUFFIXES = ("_dir", "_path", "_file", "_url", "_root")


def is_machine_key(key: Any) -> bool:
    return str(key) in MACHINE_KEYS or str(key).endswith(MACHINE_SUFFIXES)


def without_machine_keys(value: Any) -> Any:
    """A stored data config reduced to *what* data: every location (at any depth) removed."""
    if isinstance(value, dict):
        return {k: without_machine_keys(v) for k, v in value.items() if not is_machine_key(k)}
    return value


def overlay(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``update``'s values, nested mappings merged key by key."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = overlay(merged[key], value)
        else:
            merged[key] = value
    return merged


def data_overrides_on_command_line() -> tuple[str | None, set[str]]:
    """The data group chosen with ``data=NAME`` (or None) and the keys set with ``data.KEY=...``."""
    try:
        overrides = HydraConfig.get().overrides.task
    except ValueError:  # not inside a Hydra run
        return None, set()
    group, keys = None, set()
    for item in overrides:
        key, _, value = item.lstrip("+~").partition("=")
        parts = key.split(".")
        if parts[0] == "data":
            if len(parts) == 1:
                group = value
            else:
                keys.add(parts[1])
    return group, keys


def data_group_defaults(name: str, cfg: DictConfig) -> dict[str, Any] | None:
    """``conf/data/<name>.yaml`` resolved against this command's settings (None: no such group)."""
    groups = {path.stem: path for path in (CONFIG_DIR / "data").glob("*.yaml")}
    if name not in groups:  # a name, never a path: only the groups that exist here
        return None
    group = compose("evaluate", [f"data={name}"]).data  # the group as Hydra builds it: schema + YAML
    root = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    root.data = OmegaConf.create(OmegaConf.to_container(group, resolve=False))
    return OmegaConf.to_container(root.data, resolve=True)


def choose_data_config(cfg: DictConfig, loaded: LoadedCheckpoint) -> tuple[dict[str, Any], str]:
    """The data to evaluate on, and where its settings came from (for the log).

    The run's saved ``config.yaml`` gives the dataset and its settings (normalisation, lengths,
    vocabulary settings, built-in corpus size...) unless the command line picks another data group;
    ``data.KEY=...`` on the command line wins over it. Locations (``data.root``, ``data.cache_dir``,
    the download URL, any ``*_dir``/``*_path``) always come from this command line or the defaults:
    the stored config is never trusted to say where to read, since the data cache is loaded from there.
    """
    current = OmegaConf.to_container(cfg.data, resolve=True)
    stored = (loaded.run_config or {}).get("data") if cfg.evaluate.data_from_run else None
    if not isinstance(stored, dict) or not stored:
        return current, "command line / default"
    group, user_keys = data_overrides_on_command_line()
    name = str(stored.get("name"))
    if group is not None and current.get("name") != name:
        return current, "command line (another dataset than the checkpoint's run)"
    base = current if current.get("name") == name else data_group_defaults(name, cfg)
    if base is None:
        raise ConfigError(
            f"the checkpoint's run used data {name!r}, which has no conf/data group here; "
            "choose the data on the command line (data=NAME and its location)"
        )
    what = {k: v for k, v in without_machine_keys(stored).items() if k not in ("name", "source")}
    chosen = overlay(base, what)
    for key in user_keys & set(current):
        chosen[key] = current[key]
    if stored.get("root") not in (None, chosen.get("root")):
        log.warning(
            "the checkpoint's run read its data from data.root=%s; a stored run config is not trusted for "
            "locations, so this evaluation uses data.root=%s (pass data=%s data.root=PATH to choose)",
            stored.get("root"), chosen.get("root"), name,
        )  # fmt: skip
    return chosen, "checkpoint run config (locations from the command line / defaults)"
