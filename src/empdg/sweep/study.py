"""Samplers, storages and the study itself, built from ``sweep.*``.

Storage choice: a SQLAlchemy database (SQLite by default) through ``RDBStorage``. Parallel worker
processes on one machine share the SQLite file; SQLite serialises writers with a file lock, so we
give each connection a busy ``timeout`` (``sweep.sqlite_timeout``) instead of failing with
"database is locked" -- Optuna's writes are tiny, so a few workers never wait long. Heartbeats mark
trials of a killed worker FAIL, so the study stays consistent after a crash. For many workers or
several machines use a server database (PostgreSQL/MySQL URL); ``journal:///path`` selects Optuna's
JournalStorage with a file lock when no database is wanted.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna

from empdg.sweep.space import ParamSpec, grid_search_space


def build_sampler(
    config: Mapping[str, Any], specs: Sequence[ParamSpec], worker: int = 0, earlier_trials: int = 0
) -> optuna.samplers.BaseSampler:
    """Seeds differ per worker and per resume: the same seed would make parallel workers, or a resumed
    study's random start-up trials, repeat points already tried."""
    name = str(config.get("name", "tpe"))
    seed = config.get("seed")
    seed = None if seed is None else int(seed) + worker + 10007 * earlier_trials
    if name == "tpe":
        return optuna.samplers.TPESampler(
            seed=seed,
            n_startup_trials=int(config.get("n_startup_trials", 10)),
            multivariate=bool(config.get("multivariate", False)),
            constant_liar=True,  # parallel workers: running trials count as bad, so workers spread out
        )
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        return optuna.samplers.GridSampler(grid_search_space(specs), seed=seed)
    raise ValueError(f"sweep.sampler.name={name!r}; use tpe, random or grid")


def storage_url(url: str) -> str:
    """Pin relative SQLite/journal paths to absolute ones (workers may run elsewhere) and create the folder."""
    for prefix in ("sqlite:///", "journal:///"):
        if url.startswith(prefix):
            path = Path(url[len(prefix) :]).expanduser().resolve()
            path.parent.mkdir(parents=True, exist_ok=True)
            return prefix + str(path)
    return url


def build_storage(config: Mapping[str, Any]) -> optuna.storages.BaseStorage:
    url = storage_url(str(config["storage"]))
    if url.startswith("journal:///"):
        from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

        path = url[len("journal:///") :]
        return optuna.storages.JournalStorage(JournalFileBackend(path, lock_obj=JournalFileOpenLock(path)))
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        engine_kwargs["connect_args"] = {"timeout": float(config.get("sqlite_timeout", 60))}
    else:
        engine_kwargs["pool_pre_ping"] = True  # long trials outlive idle server connections
    heartbeat = config.get("heartbeat_interval")
    with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna 5 but long-standing
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=int(heartbeat) if heartbeat else None,
            grace_period=int(config["grace_period"]) if heartbeat and config.get("grace_period") else None,
        )


def open_study(
    config: Mapping[str, Any],
    sampler: optuna.samplers.BaseSampler,
    pruner: optuna.pruners.BasePruner,
    storage: optuna.storages.BaseStorage,
) -> optuna.Study:
    """Create the study, or resume it when the name exists (``sweep.load_if_exists``)."""
    direction = str(config["direction"])
    if direction not in ("minimize", "maximize"):
        raise ValueError(f"sweep.direction={direction!r}; use minimize or maximize")
    study = optuna.create_study(
        storage=storage,
        sampler=sampler,
        pruner=pruner,
        study_name=str(config["study_name"]),
        direction=direction,
        load_if_exists=bool(config.get("load_if_exists", True)),
    )
    if study.direction.name.lower() != direction:
        raise ValueError(
            f"study {study.study_name!r} exists with direction {study.direction.name.lower()}; "
            f"use another sweep.study_name"
        )
    return study
