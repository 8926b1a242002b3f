"""The tracking store: its URI, the start-up write check, MLflow's HTTP settings and the run page's address.

Where artifacts go: with a local store (SQLite, file) the experiments empdg creates keep their
artifacts at ``logger.artifact_location`` on this machine; with a tracking server (``http(s)://``)
they are created without a client location, so the server's default applies (``mlflow-artifacts:``
when it runs with ``--serve-artifacts``) and every file is uploaded through the server, never
written to a path of the client.

MLflow's HTTP client retries a failing request 7 times with exponential back-off (minutes) by
default; ``logger.http_max_retries``, ``logger.http_backoff_factor`` and ``logger.http_timeout``
shorten that (they set MLflow's ``MLFLOW_HTTP_REQUEST_*`` environment variables for the process).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

log = logging.getLogger(__name__)

#: ``logger.*`` key -> MLflow's environment variable (read by MLflow at every HTTP request)
HTTP_SETTINGS = {
    "http_max_retries": "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
    "http_backoff_factor": "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
    "http_timeout": "MLFLOW_HTTP_REQUEST_TIMEOUT",
}
#: MLflow 3's experiment type, set on the experiments empdg creates unless one is already set; MLflow 3.0-3.x
#: opened such an experiment on its runs table, 3.17 no longer reads it for that (see :func:`run_page_url`)
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
#: MLflow 3.17's UI takes its view (GenAI or model training) from this URL parameter, else from a switch the
#: browser remembers (``localStorage["mlflow.workflowType_v1"]``, GenAI unless the user switched)
UI_VIEW_PARAMETER = "workflowType=machine_learning"
#: where ``mlflow ui`` listens unless told otherwise
DEFAULT_UI_ADDRESS = "http://127.0.0.1:5000"


def absolute_sqlite_uri(uri: str, create: bool = True) -> str:
    """``sqlite:///relative/x.db`` depends on the working directory; pin it and create its folder.

    ``create=False`` only pins it (a fallback store's folder is made when the fallback is opened).

    SQLite URI filenames (``sqlite:///file:/path/x.db?mode=ro&uri=true``) are left as they are. A
    folder that cannot be created is not an error here: the store's own error says so later.
    """
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or uri[len(prefix) :].startswith("file:"):
        return uri
    path_text, sep, query = uri[len(prefix) :].partition("?")
    path = Path(path_text).expanduser().resolve()
    if create:
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
    return prefix + str(path) + sep + query


#: how long a run waits for another process creating the same SQLite store before trying anyway
STORE_LOCK_TIMEOUT_S = 120.0


@contextlib.contextmanager
def sqlite_store_lock(uri: str, timeout: float = STORE_LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold an exclusive lock on ``<database>.lock`` beside a SQLite store while opening it.

    MLflow creates (and migrates) a store's tables, then the experiment, on first use; two runs started
    at once on a fresh store both do it, and the loser fails (``duplicate column name``) and logs to its
    own fallback store. Serialised, the second finds the tables made and simply opens them. The wait is
    bounded: after ``timeout`` seconds the run tries without the lock (the fallback still catches a
    failure). Other stores (servers, ``file:`` URIs, platforms without ``fcntl``) are not locked.
    """
    prefix = "sqlite:///"
    database = uri[len(prefix) :].partition("?")[0] if uri.startswith(prefix) else ""
    try:
        import fcntl
    except ImportError:  # Windows
        fcntl = None
    if not database or database.startswith("file:") or fcntl is None:
        yield
        return
    try:
        handle = open(database + ".lock", "a")  # noqa: SIM115 - held until the store is open
    except OSError:  # a folder that cannot be written: the store's own error says so later
        yield
        return
    with handle:
        deadline = time.monotonic() + timeout
        locked = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                locked = True
                break
            except OSError:
                if time.monotonic() >= deadline:
                    log.warning("%s stayed locked for %.0f s: opening the store without the lock", database, timeout)
                    break
                time.sleep(0.05)
        try:
            yield
        finally:
            if locked:
                fcntl.flock(handle, fcntl.LOCK_UN)


def is_server_uri(uri: str) -> bool:
    """True for a tracking server (``http(s)://``): its artifacts belong to the server, not to this machine."""
    return urlparse(str(uri)).scheme.lower() in ("http", "https")


def experiment_artifact_location(uri: str, artifact_location: str | Path | None) -> str | None:
    """The artifact location to create an experiment with in the store ``uri``.

    A local store gets ``artifact_location`` as a ``file://`` URI (a path here; None keeps MLflow's
    default); a server gets None, so its own default applies: with ``mlflow server --serve-artifacts``
    that is its artifact proxy, and the client uploads through it instead of writing to a local path
    the server and other machines never see.
    """
    if is_server_uri(uri) or artifact_location is None or str(artifact_location) == "":
        return None
    text = str(artifact_location)
    if urlparse(text).scheme not in ("", "file"):  # already a URI (s3://, mlflow-artifacts:, ...)
        return text
    return Path(text).expanduser().resolve().as_uri()


def client_side_artifact_uri(artifact_uri: str | None) -> bool:
    """True when a run's artifact URI is a path the CLIENT writes to (``file://`` or a bare path)."""
    if not artifact_uri:
        return False
    scheme = urlparse(artifact_uri).scheme.lower()
    return scheme in ("", "file") or len(scheme) == 1  # a one-letter scheme: a Windows drive (C:/...)


def configure_http(logger_cfg: Mapping[str, Any]) -> None:
    """Apply ``logger.http_*`` to MLflow's HTTP client (process-wide; null keeps MLflow's setting)."""
    for key, env in HTTP_SETTINGS.items():
        value = logger_cfg.get(key)
        if value is not None:
            os.environ[env] = str(int(value))


@contextlib.contextmanager
def quick_http(timeout: int = 5) -> Iterator[None]:
    """No retries and a short timeout for one best-effort call to a store known to be failing."""
    saved = {env: os.environ.get(env) for env in HTTP_SETTINGS.values()}
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(timeout)
    try:
        yield
    finally:
        for env, value in saved.items():
            if value is None:
                os.environ.pop(env, None)
            else:
                os.environ[env] = value


def error_text(error: BaseException) -> str:
    """One line naming the error's type and its message (cut to 300 characters)."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:300]}{'...' if len(text) > 300 else ''}"


def probe_tracking_store(uri: str, experiment_name: str, artifact_location: str | None = None) -> str | None:
    """Return None when the store answers AND accepts a write, else the error text.

    The write: the experiment is created when missing and tagged with the time of the check (a
    read-only database or a server that only reads fails here, not in the middle of a run).
    """
    if is_server_uri(uri):  # a server keeps the artifacts where it is configured to (see module doc)
        artifact_location = None
    try:
        from mlflow.tracking import MlflowClient

        with sqlite_store_lock(uri):  # a fresh store's tables and the experiment: one creator at a time
            return _probe(MlflowClient(tracking_uri=uri), experiment_name, artifact_location)
    except Exception as error:  # any failure means: use the fallback store
        return error_text(error)


def _probe(client: Any, experiment_name: str, artifact_location: str | None) -> None:
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None or experiment.lifecycle_stage == "deleted":
        experiment_id = client.create_experiment(experiment_name, artifact_location=artifact_location)
    else:
        experiment_id = experiment.experiment_id
    client.set_experiment_tag(experiment_id, "empdg.write_check", time.strftime("%Y-%m-%dT%H:%M:%S"))
    mark_experiment_kind(client, experiment_id)


def run_page_url(tracking_uri: str, experiment_id: str | None, run_id: str | None) -> str:
    """The run's page in MLflow's UI, in its model-training view: on the server, or ``mlflow ui``'s default address."""
    base = str(tracking_uri).rstrip("/") if is_server_uri(tracking_uri) else DEFAULT_UI_ADDRESS
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}?{UI_VIEW_PARAMETER}"


def mark_experiment_kind(client: Any, experiment_id: str) -> None:
    """Tag the experiment as model training (:data:`EXPERIMENT_KIND`) unless it already has a kind."""
    experiment = client.get_experiment(experiment_id)
    if not (experiment.tags or {}).get(EXPERIMENT_KIND_TAG):
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
