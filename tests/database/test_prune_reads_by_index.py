"""`prune` deletes old rows 1,000 per statement (`database/pruning.py`). A statement that finds its rows
by scanning the table makes a prune's time the table's size times the number of batches, and once a table
is large enough every statement outlasts the statement timeout: the table can no longer be pruned. This
runs both prunes (requests and push delivery's history), records every statement they send, and reads
each one's plan: none may scan a table. (A deleted raw request's references are found by the statements
the database runs itself: tests/database/test_raw_request_references.py.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy import event

from webhook_service.delivery.history import prune_history
from webhook_service.intake.retention import prune_requests


def _statements_of(runtime, prune) -> list[tuple[str, object]]:
    sent: list[tuple[str, object]] = []

    def record(_connection, _cursor, statement, parameters, _context, _executemany) -> None:
        if statement.lstrip().upper().startswith(("DELETE", "SELECT")):
            sent.append((statement, parameters))

    event.listen(runtime.db.engine, "before_cursor_execute", record)
    try:
        prune()
    finally:
        event.remove(runtime.db.engine, "before_cursor_execute", record)
    return sent


def _scans(connection: sa.Connection, statement: str, parameters) -> list[str]:
    """The lines of the statement's plan that read a whole table."""
    if connection.dialect.name == "postgresql":
        # With sequential scans priced out, only a statement that has no other way shows one.
        connection.exec_driver_sql("SET LOCAL enable_seqscan TO off")
        plan = connection.exec_driver_sql(f"EXPLAIN {statement}", parameters).scalars().all()
        return [line for line in plan if "Seq Scan" in line]
    plan = [row[-1] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)]
    return [line for line in plan if line.startswith("SCAN ")]


def test_no_statement_of_a_prune_scans_a_table(runtime):
    cutoff = datetime.now(UTC) - timedelta(days=30)
    sent = []
    for dry_run in (True, False):  # counting (--dry-run), then deleting
        sent += _statements_of(
            runtime, lambda: prune_requests(runtime.db, cutoff, include_unresolved=True, dry_run=dry_run)
        )
        sent += _statements_of(runtime, lambda: prune_history(runtime.db, cutoff, dry_run=dry_run))
    deleted = {statement.split()[2] for statement, _ in sent if statement.upper().startswith("DELETE")}
    assert deleted >= {"raw_requests", "quarantined_requests", "request_log", "delivery_attempts", "deliveries"}
    with runtime.db.engine.connect() as connection:
        scanning = {
            statement: scans for statement, parameters in sent if (scans := _scans(connection, statement, parameters))
        }
        connection.rollback()
    assert scanning == {}
