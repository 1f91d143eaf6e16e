"""Reading what a statement does to the database: the statements a piece of code sends, and a statement's
plan as the planner would choose it for a large table. Tests that hold "this finds its rows by an index"
use them (a small test table is scanned whatever indexes it has, since a scan is cheaper there)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event


@contextmanager
def statements_sent(engine: sa.Engine, wanted: Callable[[str], bool]) -> Iterator[list[tuple[str, Any]]]:
    """The (statement, parameters) the engine's connections send inside the block that `wanted` keeps."""
    sent: list[tuple[str, Any]] = []

    def record(_connection, _cursor, statement, parameters, _context, _executemany) -> None:
        if wanted(statement):
            sent.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)


def without_statement_timeout(connection: sa.Connection) -> None:
    """Lift the service's statement timeout for the rest of the connection's transaction (PostgreSQL): for a
    test's setup that fills a table (tens of thousands of rows), which a slow or loaded machine takes
    longer than the service allows a webhook's statement."""
    connection.exec_driver_sql("SET LOCAL statement_timeout = 0")


def plan(connection: sa.Connection, statement: str, parameters: Any = None, *, analyze: bool = False) -> list[str]:
    """The statement's plan, a line a node: on PostgreSQL with sequential scans priced out (so that only a
    statement that has no other way shows one), `analyze` to run it and show the rows each node read; on
    SQLite, EXPLAIN QUERY PLAN's lines ("SCAN t" reads the whole table, "SEARCH t USING INDEX ..." not).
    Call it in a transaction of its own: the PostgreSQL setting lasts until its end."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("SET LOCAL enable_seqscan TO off")
        explain = "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF)" if analyze else "EXPLAIN"
        return list(connection.exec_driver_sql(f"{explain} {statement}", parameters).scalars())
    return [row[-1] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)]


def rows_thrown_away(plan_lines: list[str]) -> int:
    """Rows a plan run with `analyze` (PostgreSQL) read and then threw away: by a filter, or by an index
    recheck. A statement that finds its rows by an index throws away next to none."""
    pattern = re.compile(r"Rows Removed by (?:Filter|Index Recheck): (\d+)")
    return sum(int(found) for line in plan_lines for found in pattern.findall(line))


def numbers(dialect: str) -> str:
    """A query of the numbers 1 to `:count` (column `n`), on either database: for filling a table with a
    busy deployment's rows in one statement."""
    if dialect == "postgresql":
        return "SELECT n FROM generate_series(1, :count) AS n"
    return "WITH RECURSIVE numbers(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM numbers WHERE n < :count) SELECT n FROM numbers"


def rows_read(engine: sa.Engine, table: str) -> int:
    """Rows PostgreSQL has read from `table` and its indexes so far (sequential scans' rows and index
    entries), as its statistics count them: what a statement did, whatever the machine's load made its time.
    Sessions report their counts when they go idle; call this after the reading sessions' last commit."""
    with engine.connect() as connection:
        connection.exec_driver_sql("SELECT pg_stat_force_next_flush()")
        connection.exec_driver_sql("SELECT pg_stat_clear_snapshot()")
        read = connection.exec_driver_sql(
            "SELECT coalesce(seq_tup_read, 0)"
            " + (SELECT coalesce(sum(idx_tup_read), 0) FROM pg_stat_user_indexes WHERE relname = %(table)s)"
            " FROM pg_stat_user_tables WHERE relname = %(table)s",
            {"table": table},
        )
        return int(read.scalar_one())
