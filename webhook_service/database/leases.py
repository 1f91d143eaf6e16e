"""Leases: work that one process of the whole deployment should do at a time, whichever host it runs on
(the minute's sweep, which every worker schedules), goes to whoever takes the lease first.

A lease is a row of `leases` (name, holder, expires_at). Taking it is one statement, an INSERT that on
conflict UPDATEs only a row that has expired, so of any number of processes trying at once on SQLite or
PostgreSQL exactly one gets it; the others get nothing until it expires. It is never released early:
held for its whole term, it also says "done for this period", and a holder that dies lets another take
over once the term is over. Times come from one clock, the database server's (clock.py).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from webhook_service.database.clock import database_now
from webhook_service.database.engine import Database
from webhook_service.database.tables import LEASES


@dataclass(frozen=True)
class LeaseState:
    holder: str
    expires_at: datetime


class Lease:
    def __init__(self, db: Database, name: str, seconds: float):
        self.db = db
        self.name = name
        self.term = timedelta(seconds=seconds)

    def take(self) -> bool:
        """Take the lease for its term if nobody holds it (or their term is over); False if someone
        does. Not durable: a lease lost in a machine crash is one that was never taken."""
        with self.db.writing(durable=False) as connection:
            now = database_now(connection)
            insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
            statement = insert(LEASES).values(name=self.name, holder=_this_process(), expires_at=now + self.term)
            upsert = statement.on_conflict_do_update(
                index_elements=[LEASES.c.name],
                set_={"holder": statement.excluded.holder, "expires_at": statement.excluded.expires_at},
                where=LEASES.c.expires_at <= now,
            ).returning(LEASES.c.name)
            return connection.execute(upsert).first() is not None

    def state(self) -> LeaseState | None:
        """Who took the lease last and until when (None: never taken)."""
        with self.db.reading() as session:
            row = session.execute(
                sa.select(LEASES.c.holder, LEASES.c.expires_at).where(LEASES.c.name == self.name)
            ).first()
        return None if row is None else LeaseState(row.holder, row.expires_at)


def _this_process() -> str:
    # Read at each take: a forked process has a process id of its own.
    return f"{socket.gethostname()}:{os.getpid()}"[:255]
