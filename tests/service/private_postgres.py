"""A PostgreSQL cluster of the test's own, for tests that freeze or stop the server: the shared one on
127.0.0.1:5432 serves everyone else's tests and is never signalled.

The machine's `initdb` and `pg_ctl` make it in a temporary directory on a free port, run as the `postgres`
user when the tests run as root (PostgreSQL refuses to run as root). `freeze()` stops the postmaster and
every backend with SIGSTOP: the kernel still accepts connections and acknowledges data for them, but no
process answers, as when the server's machine stalls. `halt()` and `resume()` stop and start the server
as an operator or a failover does: nothing listens on its port in between.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from glob import glob
from pathlib import Path

import sqlalchemy as sa

from tests.fixtures.services import free_port, service_unavailable
from webhook_service.database.migrate import migrate

SERVER_USER = "postgres"


def server_programs() -> tuple[Path, Path] | None:
    """initdb and pg_ctl: on the PATH or /usr/local/bin, else the newest /usr/lib/postgresql/*/bin."""
    for directory in ["/usr/local/bin", *sorted(glob("/usr/lib/postgresql/*/bin"), reverse=True)]:
        initdb, pg_ctl = Path(directory, "initdb"), Path(directory, "pg_ctl")
        if initdb.exists() and pg_ctl.exists():
            return initdb, pg_ctl
    initdb_found, pg_ctl_found = shutil.which("initdb"), shutil.which("pg_ctl")
    return (Path(initdb_found), Path(pg_ctl_found)) if initdb_found and pg_ctl_found else None


# The tests' server: nothing it stores must survive a crash of the machine, and it serves a handful of
# connections.
TEST_SETTINGS = {"fsync": "off", "max_connections": "30", "shared_buffers": "16MB"}


class PrivateCluster:
    """`settings`: the server's, as `-c name=value`; `environment`: added to the server processes' (a
    benchmark loads a library into them this way)."""

    def __init__(
        self,
        initdb: Path,
        pg_ctl: Path,
        *,
        settings: dict[str, str] = TEST_SETTINGS,
        environment: dict[str, str] | None = None,
    ):
        self._initdb, self._pg_ctl = initdb, pg_ctl
        self._settings = settings
        self._environment = environment or {}
        self._as_server_user = os.geteuid() == 0
        self.directory = Path(tempfile.mkdtemp(prefix="wsvc-private-pg-"))
        if self._as_server_user:
            shutil.chown(self.directory, SERVER_USER, SERVER_USER)
        self.data = self.directory / "data"
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        self.frozen = False

    def _run(self, *command: str | Path) -> None:
        prefix = ["runuser", "-u", SERVER_USER, "--"] if self._as_server_user else []
        prefix += ["env", *(f"{name}={value}" for name, value in self._environment.items())]
        subprocess.run([*prefix, *map(str, command)], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        """Make the cluster and start it (empty: `start_private_cluster` migrates it for the tests)."""
        self._run(self._initdb, "-D", self.data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8")
        self.resume()

    def halt(self) -> None:
        """Stop the server as an operator or a failover does (fast shutdown: sessions are ended, nothing
        answers on the port until `resume`)."""
        self._run(self._pg_ctl, "-D", self.data, "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        settings = " ".join(f"-c {name}={value}" for name, value in self._settings.items())
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 {settings}"
        self._run(self._pg_ctl, "-D", self.data, "-o", options, "-l", self.directory / "server.log", "-w", "start")

    def processes(self) -> list[int]:
        """The postmaster, then its children (backends and background processes)."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        children = Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text().split()
        return [postmaster, *map(int, children)]

    def freeze(self) -> None:
        # The postmaster first, so that it forks no backend the list of its children would miss.
        postmaster = self.processes()[0]
        os.kill(postmaster, signal.SIGSTOP)
        self.frozen = True
        self._signal(self.processes()[1:], signal.SIGSTOP)

    def thaw(self) -> None:
        self._signal(self.processes(), signal.SIGCONT)
        self.frozen = False

    @staticmethod
    def _signal(pids: list[int], number: int) -> None:
        for pid in pids:
            try:
                os.kill(pid, number)
            except ProcessLookupError:
                pass  # a backend that ended after the list was read

    def scalar(self, query: str, **params: object) -> object:
        engine = sa.create_engine(self.url, poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as connection:
                return connection.execute(sa.text(query), params).scalar()
        finally:
            engine.dispose()

    def stop(self) -> None:
        if self.frozen:
            self.thaw()
        if (self.data / "postmaster.pid").exists():
            self._run(self._pg_ctl, "-D", self.data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.directory, ignore_errors=True)


def start_private_cluster() -> PrivateCluster:
    """A started, migrated cluster; skips (laptop) or fails (CI) when the machine cannot make one."""
    programs = server_programs()
    if programs is None:
        service_unavailable("a private PostgreSQL cluster", "initdb and pg_ctl are not installed")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            service_unavailable("a private PostgreSQL cluster", f"running as root and there is no {SERVER_USER} user")
    assert programs is not None
    cluster = PrivateCluster(*programs)
    try:
        cluster.start()
        migrate(cluster.url)
    except BaseException:
        cluster.stop()
        raise
    return cluster
