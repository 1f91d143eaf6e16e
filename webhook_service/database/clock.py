"""The time that work shared by every process of the deployment counts by (leases, the console's rate
limits): the database server's clock on PostgreSQL, since the hosts' clocks may disagree by seconds;
SQLite is a file on this host, so there it is this host's."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa


def database_now(connection: sa.Connection) -> datetime:
    """Now, by the clock of the database `connection` is on (aware, UTC)."""
    if connection.dialect.name == "postgresql":
        now: datetime = connection.execute(sa.select(sa.func.statement_timestamp())).scalar_one()
        return now.astimezone(UTC)
    return datetime.now(UTC)
