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

import contextlib
import functools
import hashlib
import random
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from empdg.sweep.space import ParamSpec, grid_search_space


def trial_seed(study_seed: int, trial_number: int) -> int:
    """A 32-bit seed for one trial, mixed from the study's seed and the trial's number."""
    digest = hashlib.sha256(f"empdg-sampler:{study_seed}:{trial_number}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


class PerTrialSeedSampler(optuna.samplers.BaseSampler):
    """Runs a fresh inner sampler for every trial, seeded from the study seed and the trial's NUMBER.

    Optuna's storage hands out trial numbers atomically, so no two trials of a study share a seed,
    whichever process or machine runs them: workers spawned by ``sweep.n_jobs``, the same command
    started twice on one machine, or on several machines. (One seed per process made identical
    commands draw identical parameter sets: trial 0 = trial 1, 2 = 3.) A study run by one process is
    still reproducible from ``sweep.sampler.seed``, and a resumed study continues with new numbers,
    hence new seeds. TPE, random and grid samplers keep no state between trials besides their random
    generator (TPE refits on the study's trials each time), so a sampler per trial loses nothing.
    """

    def __init__(self, factory: Callable[[int | None], optuna.samplers.BaseSampler], seed: int | None) -> None:
        self._factory = factory
        self._seed = seed
        self._current = factory(seed)
        self.last_seed: int | None = seed

    @property
    def inner(self) -> optuna.samplers.BaseSampler:
        return self._current

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.last_seed = None if self._seed is None else trial_seed(self._seed, trial.number)
        self._current = self._factory(self.last_seed)
        self._current.before_trial(study, trial)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self._current.infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self._current.sample_relative(study, trial, search_space)

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self._current.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        self._current.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._current.reseed_rng()


def _make_sampler(
    name: str, config: Mapping[str, Any], grid: dict[str, list[Any]] | None, seed: int | None
) -> optuna.samplers.BaseSampler:
    with warnings.catch_warnings():  # multivariate TPE is "experimental" in Optuna but long-standing
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if name == "tpe":
            return optuna.samplers.TPESampler(
                seed=seed,
                n_startup_trials=int(config.get("n_startup_trials", 10)),
                multivariate=bool(config.get("multivariate", False)),
                constant_liar=True,  # parallel workers: running trials count as bad, so workers spread out
            )
        if name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        return optuna.samplers.GridSampler(grid, seed=seed)


def build_sampler(config: Mapping[str, Any], specs: Sequence[ParamSpec]) -> optuna.samplers.BaseSampler:
    """The study's sampler; each trial draws with its own seed (see :class:`PerTrialSeedSampler`)."""
    name = str(config.get("name", "tpe"))
    if name not in ("tpe", "random", "grid"):
        raise ValueError(f"sweep.sampler.name={name!r}; use tpe, random or grid")
    grid = grid_search_space(specs) if name == "grid" else None
    seed = config.get("seed")
    return PerTrialSeedSampler(
        functools.partial(_make_sampler, name, dict(config), grid), None if seed is None else int(seed)
    )


def storage_url(url: str) -> str:
    """Pin relative SQLite/journal paths to absolute ones (workers may run elsewhere) and create the folder."""
    from empdg.errors import ConfigError

    for prefix in ("sqlite:///", "journal:///"):
        if url.startswith(prefix):
            path = Path(url[len(prefix) :]).expanduser().resolve()
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise ConfigError(
                    f"sweep.storage={url}: cannot create its folder {path.parent} "
                    f"({error.strerror or type(error).__name__}); choose a writable place, sweep.storage={prefix}PATH"
                ) from None
            return prefix + str(path)
    return url


@contextlib.contextmanager
def sqlite_errors(url: str) -> Iterator[None]:
    """SQLite refusing the study's file (a read-only folder, a damaged or foreign file) is the user's to fix:
    a ConfigError naming the file, not an OperationalError traceback (and not exit status 1, which says
    "every trial failed")."""
    import sqlalchemy.exc

    from empdg.errors import ConfigError

    try:
        yield
    except sqlalchemy.exc.DatabaseError as error:  # OperationalError is one
        if not url.startswith("sqlite"):
            raise
        reason = str(error.orig or error).strip().splitlines()[0]
        path = url[len("sqlite:///") :]
        if Path(path).is_dir():
            fix = "it is a folder: name a file in it"
        elif "not a database" in reason or "malformed" in reason:
            fix = "it is not a readable SQLite database (damaged, or another file): move it away to start a new study"
        else:
            fix = "SQLite must write the file and a journal beside it: make the folder writable by this user"
        raise ConfigError(
            f"sweep.storage={url}: SQLite cannot use {path} ({reason}); {fix}, or choose another "
            "sweep.storage=sqlite:///PATH"
        ) from None


POSTGRES_DRIVERS = ("psycopg", "psycopg2")  # SQLAlchemy dialect name = module name, in order of preference
POSTGRES_HINT = 'pip install "empdg[postgres]" (psycopg 3) or pip install psycopg2-binary'


def server_url(url: str) -> str:
    """``postgresql://`` (or ``postgres://``) without a driver: name the installed one, so the URL works whichever
    driver SQLAlchemy's version defaults to (psycopg2 before 2.1, psycopg 3 since). A missing driver is named here,
    before the study is touched, instead of an ImportError from deep inside SQLAlchemy."""
    import importlib.util

    from sqlalchemy.engine import make_url

    if not url.startswith(("postgres://", "postgres+", "postgresql")):
        return url
    if url.startswith("postgres://") or url.startswith("postgres+"):
        url = "postgresql" + url[len("postgres") :]
    parsed = make_url(url)
    driver = parsed.get_driver_name() if "+" in parsed.drivername else None
    if driver is None:
        driver = next((d for d in POSTGRES_DRIVERS if importlib.util.find_spec(d) is not None), None)
        if driver is None:
            raise ValueError(f"sweep.storage={masked(url)} needs a PostgreSQL driver on every machine: {POSTGRES_HINT}")
        return parsed.set(drivername=f"postgresql+{driver}").render_as_string(hide_password=False)
    module = {"psycopg_async": "psycopg"}.get(driver, driver)
    if importlib.util.find_spec(module) is None:
        package = {"psycopg": '"psycopg[binary]"', "psycopg2": "psycopg2-binary"}.get(module, module)
        raise ValueError(
            f"sweep.storage={masked(url)} names the driver {driver}, which is not installed: pip install {package} "
            f'(or drop "+{driver}" from the URL and pip install "empdg[postgres]")'
        )
    return url


def masked(url: str) -> str:
    """The URL with its password replaced by ***, for messages and logs."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("://")[0] + "://..."


def check_storage(config: Mapping[str, Any]) -> None:
    """The storage URL's driver is importable (raises ValueError naming the fix); runs before the study is touched."""
    server_url(str(config["storage"]))


def build_storage(config: Mapping[str, Any]) -> optuna.storages.BaseStorage:
    """The study's storage. A server that refuses the connection is a ConfigError naming what to check.

    Several processes opening a fresh database at once race to create Optuna's tables (PostgreSQL
    then raises a duplicate-key or already-exists error in all but one): retried after the winner is done.
    """
    import sqlalchemy.exc

    from empdg.errors import ConfigError

    url = storage_url(str(config["storage"]))
    if url.startswith("journal:///"):
        from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

        path = url[len("journal:///") :]
        return optuna.storages.JournalStorage(JournalFileBackend(path, lock_obj=JournalFileOpenLock(path)))
    try:
        url = server_url(url)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        engine_kwargs["connect_args"] = {"timeout": float(config.get("sqlite_timeout", 60))}
    else:
        engine_kwargs["pool_pre_ping"] = True  # long trials outlive idle server connections (server restarts too)
    heartbeat = config.get("heartbeat_interval")
    for attempt in range(5):
        try:
            with warnings.catch_warnings(), sqlite_errors(url):  # heartbeats: "experimental" in Optuna 5
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=int(heartbeat) if heartbeat else None,
                    grace_period=int(config["grace_period"]) if heartbeat and config.get("grace_period") else None,
                )
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            if attempt == 4 or url.startswith("sqlite"):
                raise
            time.sleep(0.5 + random.random())  # another process is creating the tables
        except sqlalchemy.exc.OperationalError as error:
            if url.startswith("sqlite"):
                raise
            reason = str(error.orig or error).strip().splitlines()[0]
            raise ConfigError(
                f"sweep.storage={masked(url)}: the database server refused the connection ({reason}); check that "
                "it runs and listens on that host and port, that the user may log in from this machine "
                "(pg_hba.conf) and that the database exists (createdb)"
            ) from None
    raise AssertionError("unreachable")


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
    url = str(getattr(storage, "url", ""))  # an RDBStorage's: a read-only SQLite file fails at the first write
    with sqlite_errors(url):
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
