"""`column` is one of a list of values passed at execution, written so that the statement's text is the
same whatever the list's length: on PostgreSQL `column = ANY(:values)` with the list as one array
parameter (psycopg then parses and prepares the statement once), elsewhere an expanding IN (SQLite binds
each value; SQLAlchemy renders one placeholder per value, cheaply there)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


def any_of(column: Any, name: str, dialect: str) -> Any:
    """The condition; execute with `{name: [values...]}`."""
    if dialect == "postgresql":
        return column == sa.any_(sa.bindparam(name, type_=postgresql.ARRAY(column.type)))
    return column.in_(sa.bindparam(name, expanding=True))
