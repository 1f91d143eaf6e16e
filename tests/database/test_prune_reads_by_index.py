"""`prune` deletes old rows 1,000 per statement (`database/pruning.py`). A statement that finds its rows
by scanning the table makes a prune's time the table's size times the number of batches, and once a table
is large enough every statement outlasts the statement timeout: the table can no longer be pruned. This
runs both prunes (requests and push delivery's history), records every statement they send, and reads
each one's plan: none may scan a table. (A deleted raw request's references are found by the statements
the database runs itself: tests/database/test_raw_request_references.py.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from tests.support.plans import plan, statements_sent
from webhook_service.delivery.history import prune_history
from webhook_service.intake.retention import prune_requests


def _statements_of(runtime, prune) -> list[tuple[str, object]]:
    with statements_sent(
        runtime.db.engine, lambda statement: statement.lstrip().upper().startswith(("DELETE", "SELECT"))
    ) as sent:
        prune()
    return sent


def _scans(connection: sa.Connection, statement: str, parameters) -> list[str]:
    """The lines of the statement's plan that read a whole table."""
    return [line for line in plan(connection, statement, parameters) if "Seq Scan" in line or line.startswith("SCAN ")]


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
