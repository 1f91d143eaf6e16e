"""Statements a hot path runs thousands of times a second, compiled once and run on the driver's cursor.

`Connection.execute` spends 60 to 80 µs of CPU per call on a compiled-cache lookup, an execution context,
events and a result object: for the webhook's four small inserts that was more than SQLite spent storing
them, and on SQLite every writer waits while one holds the write turn. Here each statement is compiled by
SQLAlchemy, once per dialect and set of parameters, from the same tables; its parameters are converted by
the columns' own bind processors (the same JSON, datetimes and variants `execute` would send), and it runs
on the DBAPI cursor of the connection's current transaction. Errors come out as SQLAlchemy's (a
`sa.exc.OperationalError` for a database that is gone), and a broken connection is invalidated, as
`execute` does, so callers and the outage logic see no difference.

Only for statements whose columns all get their values from the caller (no Python-side defaults to fill
in) and whose results are at most one row of plain values.

A row can also be converted ahead of its transaction (`bind`), leaving out values that are known only
inside it (an id the transaction's first insert returns): on SQLite every writer waits while one holds the
write turn, and converting a webhook's values (its JSON above all) was a third of what the turn's holder
spent on it.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect


@dataclass(frozen=True)
class _Compiled:
    sql: str
    positional: bool
    names: tuple[str, ...]
    # Each parameter's conversion, or None when the driver takes the value as it is.
    processors: tuple[Callable[[Any], Any] | None, ...]
    returns_rows: bool
    # SQLite: the statement for many rows at once (run_many), when it is a plain insert.
    multi_row: _MultiRowInsert | None = None
    # PostgreSQL: run as a prepared statement (PreparedStatement's `kept_prepared`). The compiled
    # statement's own, so that a row bound by one statement and run by another keeps it.
    kept_prepared: bool = False

    @functools.cached_property
    def _conversions(self) -> tuple[tuple[int, Callable[[Any], Any]], ...]:
        """The parameters that need converting (a few of a row's columns: times, JSON), by position."""
        return tuple((index, process) for index, process in enumerate(self.processors) if process is not None)

    def parameters(self, values: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        converted = [values[name] for name in self.names]
        for index, process in self._conversions:
            converted[index] = process(converted[index])
        return converted if self.positional else dict(zip(self.names, converted, strict=True))


class BoundRow:
    """A row's values converted for the driver ahead of the transaction that runs it (`bind`), but for
    its `late` ones (values known only in the transaction: an id it inserted), given with `given`."""

    __slots__ = ("compiled", "converted", "late")

    def __init__(self, compiled: _Compiled, converted: Sequence[Any] | dict[str, Any], late: tuple[str, ...]):
        self.compiled = compiled
        self.converted = converted
        self.late = late

    def given(self, **late: Any) -> BoundRow:
        """The row with its late values."""
        if set(late) != set(self.late):
            raise ValueError(f"give the late values {sorted(self.late)}, not {sorted(late)}")
        compiled = self.compiled
        given = {}
        for name, value in late.items():
            process = compiled.processors[compiled.names.index(name)]
            given[name] = value if process is None else process(value)
        if not compiled.positional:
            return BoundRow(compiled, {**self.converted, **given}, ())  # type: ignore[dict-item]
        converted = list(self.converted)
        for name, value in given.items():
            converted[compiled.names.index(name)] = value
        return BoundRow(compiled, converted, ())

    def parameters(self) -> Sequence[Any] | dict[str, Any]:
        if self.late:
            raise ValueError(f"the late values {sorted(self.late)} were not given")
        return self.converted


class PreparedStatement:
    """One Core statement (an insert, or a statement with named bind parameters), run with `run` (one
    set of values, the first row it returns, if any) or `run_many` (many rows: how many it inserted)."""

    def __init__(self, statement: sa.Executable, *, kept_prepared: bool = False):
        """`kept_prepared`: on PostgreSQL a prepared statement of the connection from its first run, whose
        plan PostgreSQL keeps (database/postgres.py: other statements are planned at every run): for the
        statements the group commit runs for every batch. A kept plan is made for the tables as they are
        when it is made, so the connection prepares its kept statements anew every `REPLAN_SECONDS`:
        a plan made on a new deployment's small tables reads them by whatever path was cheapest then
        (a scan, the wrong index) however they grow, until autovacuum next analyzes them."""
        if isinstance(statement, sa.Insert) and not statement._returning:
            # No RETURNING of the new row's key that nobody reads (SQLAlchemy adds one on PostgreSQL).
            statement = statement.inline()
        self._statement = statement
        self._kept_prepared = kept_prepared
        self._compiled: dict[tuple[str, tuple[str, ...]], _Compiled] = {}
        self._lock = threading.Lock()

    def bind(self, dialect: Dialect, values: Mapping[str, Any], *, late: tuple[str, ...] = ()) -> BoundRow:
        """`values` converted now, to `run` later with the `late` ones (`BoundRow.given`)."""
        compiled = self._for(dialect, (*values, *late))
        return BoundRow(compiled, compiled.parameters({**values, **dict.fromkeys(late)}), late)

    def run(self, connection: sa.Connection, values: Mapping[str, Any] | BoundRow) -> tuple | None:
        """Run with `values`, or with a row bound ahead (its late values given)."""
        if isinstance(values, BoundRow):
            compiled, parameters = values.compiled, values.parameters()
        else:
            compiled = self._for(connection.dialect, tuple(values))
            parameters = compiled.parameters(values)
        return _execute(
            connection, compiled.sql, parameters, fetch=compiled.returns_rows, kept_prepared=compiled.kept_prepared
        )[0]

    def run_many(self, connection: sa.Connection, rows: Sequence[Mapping[str, Any] | BoundRow]) -> int:
        """Many rows, rows bound ahead too: on SQLite, an insert of up to `MULTI_ROW_INSERT_ROWS` rows
        per statement; elsewhere one executemany per set of keys the rows have (usually one). Returns
        how many rows the database says it inserted (without those an ON CONFLICT DO NOTHING skipped)."""
        by_compiled: dict[int, tuple[_Compiled, list[Any]]] = {}
        for row in rows:
            if isinstance(row, BoundRow):
                compiled, converted = row.compiled, row.parameters()
            else:
                compiled = self._for(connection.dialect, tuple(row))
                converted = compiled.parameters(row)
            by_compiled.setdefault(id(compiled), (compiled, []))[1].append(converted)
        inserted = 0
        for compiled, parameters in by_compiled.values():
            if compiled.multi_row is None:
                inserted += _execute(connection, compiled.sql, parameters, many=True)[1]
                continue
            for start in range(0, len(parameters), MULTI_ROW_INSERT_ROWS):
                chunk = parameters[start : start + MULTI_ROW_INSERT_ROWS]
                flat = [value for row in chunk for value in row]
                inserted += _execute(connection, compiled.multi_row(len(chunk)), flat)[1]
        return inserted

    def _for(self, dialect: Dialect, keys: tuple[str, ...]) -> _Compiled:
        key = (dialect.name, keys)
        compiled = self._compiled.get(key)
        if compiled is None:
            with self._lock:
                compiled = self._compiled.setdefault(
                    key, _compile(self._statement, dialect, keys, kept_prepared=self._kept_prepared)
                )
        return compiled


def _execute(
    connection: sa.Connection,
    sql: str,
    parameters: Any,
    *,
    many: bool = False,
    fetch: bool = False,
    kept_prepared: bool = False,
) -> tuple[tuple | None, int]:
    """Run `sql` on the driver's cursor: the first row it returned (when `fetch`) and its row count. The
    driver's errors come out as SQLAlchemy's, a broken connection invalidated. `kept_prepared`: as a
    prepared statement (psycopg's `prepare=True`; see PreparedStatement)."""
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        if many:
            cursor.executemany(sql, parameters)
        elif kept_prepared and connection.dialect.name == "postgresql":
            _prepare_anew_when_due(connection, cursor)
            cursor.execute(sql, parameters, prepare=True)  # type: ignore[call-arg]  # psycopg's cursor
        else:
            cursor.execute(sql, parameters)
        return (cursor.fetchone() if fetch else None), cursor.rowcount
    except connection.dialect.loaded_dbapi.Error as error:
        raise _as_sqlalchemy_error(connection, sql, parameters, error, cursor) from error
    finally:
        cursor.close()


# How long a connection keeps its prepared statements' plans (see PreparedStatement's `kept_prepared`).
# PostgreSQL plans a prepared statement for its values at its first five runs, then keeps a generic plan:
# every REPLAN_SECONDS, that costs five plans per statement and connection (a few ms of PostgreSQL's CPU).
REPLAN_SECONDS = 2.0
_PREPARED_SINCE = "webhook_service_prepared_since"


def _prepare_anew_when_due(connection: sa.Connection, cursor: Any) -> None:
    """Drop the connection's prepared statements when they are REPLAN_SECONDS old: the next run of each
    prepares it again, and its plan is made for the tables as they are now. (psycopg sees the command's
    answer and forgets its own list of them too.)"""
    now = time.monotonic()
    since = connection.info.setdefault(_PREPARED_SINCE, now)
    if now - since > REPLAN_SECONDS:
        cursor.execute("DEALLOCATE ALL")
        connection.info[_PREPARED_SINCE] = now


# Rows per multi-row insert on SQLite: 32 rows of a wide table's 25 columns (800 parameters) stay below
# SQLite's smallest limit on a statement's parameters (999, before 3.32).
MULTI_ROW_INSERT_ROWS = 32


class _MultiRowInsert:
    """An SQLite single-row INSERT's SQL repeated for `rows` rows: `VALUES (?, ?), (?, ?)`. sqlite3's
    executemany runs the statement once per row, each run letting go of the GIL and waiting to take it
    back; inside the writer turn, that waiting, not SQLite's work, was most of a batch's time."""

    def __init__(self, sql: str):
        head, _, rest = sql.partition(" VALUES (")
        group_end = rest.index(")")
        self._head = head + " VALUES "
        self._group = "(" + rest[: group_end + 1]
        self._tail = rest[group_end + 1 :]
        self._sql: dict[int, str] = {}

    def __call__(self, rows: int) -> str:
        sql = self._sql.get(rows)
        if sql is None:
            sql = self._sql.setdefault(rows, self._head + ", ".join([self._group] * rows) + self._tail)
        return sql


def _multi_row(statement: sa.Executable, dialect: Dialect, sql: str) -> _MultiRowInsert | None:
    """For a plain INSERT (with at most ON CONFLICT DO NOTHING, no RETURNING) on SQLite."""
    if dialect.name != "sqlite" or not isinstance(statement, sa.Insert) or statement._returning:
        return None
    if sql.count(" VALUES (") != 1 or "?" in sql.partition(" VALUES (")[0]:
        return None
    return _MultiRowInsert(sql)


def _compile(statement: sa.Executable, dialect: Dialect, keys: tuple[str, ...], *, kept_prepared: bool) -> _Compiled:
    compiled = statement.compile(dialect=dialect, column_keys=list(keys))  # type: ignore[attr-defined]
    if compiled.insert_prefetch:
        missing = ", ".join(column.key for column in compiled.insert_prefetch)
        raise ValueError(f"give every column a value; these have Python defaults: {missing}")
    if compiled.escaped_bind_names:
        raise ValueError(f"parameter names the driver cannot take as they are: {compiled.escaped_bind_names}")
    names = tuple(compiled.positiontup) if compiled.positional else tuple(compiled.binds)
    processors = tuple(compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names)
    return _Compiled(
        sql=compiled.string,
        positional=bool(compiled.positional),
        names=names,
        processors=processors,
        returns_rows=bool(getattr(statement, "_returning", ())) or isinstance(statement, sa.Select | sa.TextualSelect),
        multi_row=_multi_row(statement, dialect, compiled.string),
        kept_prepared=kept_prepared,
    )


def _as_sqlalchemy_error(
    connection: sa.Connection, sql: str, parameters: Any, error: Exception, cursor: Any
) -> sa.exc.DBAPIError:
    dialect = connection.dialect
    disconnected = dialect.is_disconnect(error, connection.connection.dbapi_connection, cursor)  # type: ignore[arg-type]
    wrapped = sa.exc.DBAPIError.instance(
        sql, parameters, error, dialect.loaded_dbapi.Error, connection_invalidated=disconnected, dialect=dialect
    )
    if disconnected:
        connection.invalidate(wrapped)
    return wrapped  # type: ignore[return-value]
