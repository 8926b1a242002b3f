"""A throwaway PostgreSQL cluster on 127.0.0.1, for trying a server-backed study on one machine.

The tests and the storage benchmark use it to run sweeps against a real PostgreSQL server without
an administrator: Debian's ``initdb``/``pg_ctl`` create a cluster in a temporary folder, listening
on 127.0.0.1 only (its Unix socket in that folder too), with ``trust`` authentication, and remove it
afterwards. PostgreSQL refuses to run as root, so as root the server runs as the ``postgres`` user
(``nobody`` when there is none), in a folder of its own under the system temporary folder (a
pytest ``tmp_path`` is not readable by other users). A lab's long-lived server is set up by its
administrator instead (docs/sweeps_and_comparison.md).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from empdg.tracking.local_server import free_port

INSTALL_HINT = "install PostgreSQL's server binaries (Debian/Ubuntu: apt-get install postgresql)"


def find_postgres_bin() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``: PATH first, then Debian's /usr/lib/postgresql/<version>/bin."""
    initdb = shutil.which("initdb")
    if initdb:
        folder = Path(initdb).resolve().parent
        if (folder / "pg_ctl").exists() and (folder / "postgres").exists():
            return folder
    candidates = glob.glob("/usr/lib/postgresql/*/bin") + glob.glob("/usr/pgsql-*/bin") + ["/usr/local/pgsql/bin"]

    def version(path: str) -> float:
        digits = "".join(c for c in Path(path).parent.name if c.isdigit() or c == ".")
        try:
            return float(digits)
        except ValueError:
            return 0.0

    for folder in sorted(candidates, key=version, reverse=True):
        if all((Path(folder) / name).exists() for name in ("initdb", "pg_ctl", "postgres")):
            return Path(folder)
    return None


def _service_user() -> pwd.struct_passwd | None:
    """None when not root (the server runs as the current user); else the account the server runs as."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("running as root and there is no 'postgres' or 'nobody' user for the PostgreSQL server")


class ThrowawayCluster:
    """``with ThrowawayCluster(folder) as pg: pg.url("db")`` -- a started cluster, stopped and removed on exit.

    ``settings`` are extra server settings (``{"fsync": "off"}`` for tests that do not care about
    durability). The superuser is ``empdg`` with no password (``trust``, 127.0.0.1 only).
    """

    user = "empdg"

    def __init__(
        self,
        folder: Path | str,
        bin_dir: Path | None = None,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        found = bin_dir or find_postgres_bin()
        if found is None:
            raise FileNotFoundError(f"PostgreSQL's initdb/pg_ctl were not found: {INSTALL_HINT}")
        self.bin_dir = Path(found)
        self.settings = dict(settings or {})
        self.service = _service_user()
        # as root, the server's user must reach its folder: make one it owns in the system temp folder
        self._own_base = self.service is not None
        if self._own_base:
            self.base = Path(tempfile.mkdtemp(prefix="empdg-pg-"))
            os.chown(self.base, self.service.pw_uid, self.service.pw_gid)
        else:
            self.base = Path(folder) / "postgres"
            self.base.mkdir(parents=True, exist_ok=True)
        self.data = self.base / "data"
        self.socket_dir = self.base / "socket"
        self.log_file = self.base / "server.log"
        self.port = 0
        self.started = False

    def _run(self, command: Sequence[str], as_service: bool = True, timeout: float = 120) -> str:
        argv = [str(c) for c in command]
        if as_service and self.service is not None:
            if shutil.which("runuser"):
                argv = ["runuser", "-u", self.service.pw_name, "--", *argv]
            else:
                argv = [
                    "setpriv",
                    f"--reuid={self.service.pw_uid}",
                    f"--regid={self.service.pw_gid}",
                    "--clear-groups",
                    *argv,
                ]
        done = subprocess.run(argv, cwd=self.base, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            log = self.log_file.read_text(errors="replace")[-2000:] if self.log_file.exists() else ""
            raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}{done.stderr}{log}")
        return done.stdout

    def start(self, attempts: int = 3) -> ThrowawayCluster:
        self._run(["mkdir", "-p", self.socket_dir])
        self._run(
            [
                self.bin_dir / "initdb",
                "-D",
                self.data,
                "-U",
                self.user,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
            ]
        )
        options = " ".join(f"-c {key}={value}" for key, value in self.settings.items())
        for attempt in range(attempts):  # a free port can be taken between probing and binding it
            self.port = free_port()
            server = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.socket_dir} {options}".strip()
            try:
                self._run(
                    [
                        self.bin_dir / "pg_ctl",
                        "-D",
                        self.data,
                        "-l",
                        self.log_file,
                        "-w",
                        "-t",
                        "60",
                        "-o",
                        server,
                        "start",
                    ]
                )
            except RuntimeError:
                if attempt == attempts - 1:
                    raise
                continue
            self.started = True
            return self
        raise AssertionError("unreachable")

    def create_database(self, name: str) -> str:
        """Create database ``name`` and return its SQLAlchemy URL."""
        self._run(
            [self.bin_dir / "createdb", "-h", "127.0.0.1", "-p", self.port, "-U", self.user, name], as_service=False
        )
        return self.url(name)

    def url(self, database: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        """Stop the server (fast shutdown: clients are disconnected) and remove the cluster's folder."""
        try:
            if self.started:
                self._run([self.bin_dir / "pg_ctl", "-D", self.data, "-m", "fast", "-w", "-t", "60", "stop"])
                self.started = False
        finally:
            if self._own_base:
                shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> ThrowawayCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
