"""Database outages the service must ride through with its spool, made real:

- PostgreSQL: the test's own cluster, stopped (`pg_ctl stop -m fast`) and started again; nothing listens
  on its port in between.
- SQLite: the database file on a small volume of its own (a tmpfs under the test's temporary directory),
  filled to the last page: every write the service makes fails with "database or disk is full", as on a
  real full disk, until the filler file is removed. (The tests run as root, which file permissions do not
  stop; a volume's size does. Readers are unaffected, as on a real full disk.)
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.service.private_postgres import PrivateCluster
from tests.support.small_filesystem import fill

SQLITE_VOLUME_BYTES = 32 * 1024 * 1024


class PostgresOutage:
    def __init__(self, cluster: PrivateCluster):
        self.cluster = cluster
        self.database_url = cluster.url

    def begin(self) -> None:
        self.cluster.halt()

    def end(self) -> None:
        self.cluster.resume()

    def scalar(self, query: str, **params: object) -> int:
        return int(self.cluster.scalar(query, **params))  # type: ignore[call-overload]


class SqliteOutage:
    """The database on `volume`, a small filesystem of its own (tests/support/small_filesystem.py)."""

    def __init__(self, volume: Path):
        self.volume = volume
        self.path = volume / "service.db"
        self.database_url = f"sqlite:///{self.path}"
        self._filler: Path | None = None

    def begin(self) -> None:
        self._filler = fill(self.volume)

    def end(self) -> None:
        if self._filler is not None:
            self._filler.unlink()
            self._filler = None

    def scalar(self, query: str, **params: object) -> int:
        # A reader of its own, as any other process of the host (WAL: readers need no lock).
        with sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30) as connection:
            return int(connection.execute(query.replace(":id", "?"), tuple(params.values())).fetchone()[0])
