"""The request log as the intake writes it: one row per webhook request, whatever its outcome (the table
is `database.tables.RequestLogEntry`; its queries are `database/request_log.py`).

Where each row is written, so that recording costs the hot path one INSERT and no transaction of its own:
- accepted and duplicate requests: in the message store's one transaction (`message_store.py`);
- refused ones (401, 400, 413, an adapter's bug): with their quarantine entry (`quarantine.py`), and so are
  requests acknowledged from the spool that could not be stored once drained (outcome `quarantined`);
- unknown endpoints (404) and database outages (503): alone, not waiting for the disk, and never failing
  the answer (an outage's row is most often lost with the outage, and the JSON log line keeps it).
Each row written is also counted for the overview's charts (database/request_counts.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from webhook_service.database.engine import Database
from webhook_service.database.outage import UNAVAILABLE_ERRORS
from webhook_service.database.request_counts import request_counts
from webhook_service.database.tables import REQUEST_LOG, storable
from webhook_service.intake.message_store import RawRequestRecord
from webhook_service.intake.redaction import REDACTED, kept_headers
from webhook_service.observability.logs import log
from webhook_service.providers.base import looks_secret

logger = logging.getLogger("webhook_service.intake")

INSERT_ENTRY = sa.insert(REQUEST_LOG)

# The outcome of a refused request, by the status it was answered with.
REFUSED_OUTCOMES = {400: "bad_request", 401: "unauthorized", 413: "too_large", 500: "adapter_error"}
# Headers a row keeps itself (404s, outages, duplicates: nothing else keeps their request) are cut
# here: anyone can send these requests, and no provider sends that much.
MAX_KEPT_HEADER_CHARACTERS = 16 * 1024


def entry(
    record: RawRequestRecord,
    *,
    provider: str,
    connection: str | None,
    tenant_id: str | None,
    outcome: str,
    http_status: int,
    reason_code: str | None = None,
    keep_headers: bool = False,
) -> dict[str, Any]:
    """A row of the request log (a dict of its columns) for a request kept in `record`'s redacted form.
    The message store fills in what it produced."""
    return {
        "request_id": record.request_id,
        "received_at": record.received_at,
        "provider": storable(provider[:32]),
        "connection": storable(connection and connection[:64]),
        "tenant_id": tenant_id,
        "outcome": outcome,
        "http_status": http_status,
        "reason_code": reason_code and storable(reason_code[:64]),
        "latency_ms": None,
        "remote_addr": record.remote_addr and record.remote_addr[:64],
        "method": storable(record.method[:8]),
        "url": storable(record.url),
        "headers": bounded_headers(record.headers) if keep_headers else None,
        "body_bytes": len(record.body),
        "raw_request_id": None,
        "quarantine_id": None,
        "replay_of": None,
        "message_ids": [],
        "provider_message_ids": [],
        "addresses": [],
    }


def latency_ms(received_at: datetime) -> float:
    return round((datetime.now(UTC) - received_at).total_seconds() * 1000, 2)


def bounded_headers(headers: Iterable[list[str]]) -> list[list[str]]:
    """Headers as the request log keeps them itself: signatures redacted too, and no more than a provider
    would send."""
    kept, used = [], 0
    for name, value in headers:
        used += len(name) + len(value)
        if used > MAX_KEPT_HEADER_CHARACTERS:
            kept.append(["…", f"further headers not kept (over {MAX_KEPT_HEADER_CHARACTERS} characters)"])
            break
        kept.append([storable(name), REDACTED if looks_secret(name) else storable(value)])
    return kept


class _Budget:
    """At most `per_second` admissions a second (a token bucket), for this process."""

    def __init__(self, per_second: float, clock: Callable[[], float] = time.monotonic):
        self._rate = per_second
        self._clock = clock
        self._tokens = per_second
        self._at = clock()
        self._lock = threading.Lock()

    def admit(self) -> bool:
        with self._lock:
            now = self._clock()
            self._tokens = min(self._rate, self._tokens + (now - self._at) * self._rate)
            self._at = now
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True


# Anyone can POST to a URL no connection answers, and on SQLite each of those rows takes a turn at the
# one writer webhooks wait for: past this many a second (per process), such requests are only counted
# for the overview (and logged), as quarantine keeps no more bodies past its budget.
UNKNOWN_ENDPOINT_ROWS_PER_SECOND = 20.0
_unknown_endpoint_rows = _Budget(UNKNOWN_ENDPOINT_ROWS_PER_SECOND)


def record_alone(db: Database, row: dict[str, Any]) -> None:
    """Write one row in a transaction of its own that does not wait for the disk (a row lost in a crash
    is a log line, not a request). Never raises for an outage: the answer is decided already."""
    row["latency_ms"] = latency_ms(row["received_at"])
    if row["outcome"] == "not_found" and not _unknown_endpoint_rows.admit():
        request_counts(db).add(row)
        return
    try:
        with db.writing(durable=False) as connection:
            connection.execute(INSERT_ENTRY, row)
        request_counts(db).add(row)
    except UNAVAILABLE_ERRORS as error:
        log(
            logger, "request_log_unavailable", logging.WARNING, request_id=row["request_id"], error=type(error).__name__
        )


def unknown_endpoint(
    request_id: str,
    provider: str,
    connection: str | None,
    reason_code: str,
    *,
    method: str,
    path: str,
    headers: Iterable[tuple[str, str]],
    remote_addr: str | None,
) -> dict[str, Any]:
    """The row of a request to a webhook URL no connection answers (404). No adapter says which of its
    headers are secrets, so every header whose name looks like one is redacted, and the query string is
    not kept at all."""
    record = RawRequestRecord(
        request_id=request_id,
        method=method,
        url=path,
        headers=kept_headers(headers),
        body=b"",
        remote_addr=remote_addr,
        received_at=datetime.now(UTC),
    )
    row = entry(
        record,
        provider=provider,
        connection=connection,
        tenant_id=None,
        outcome="not_found",
        http_status=404,
        reason_code=reason_code,
        keep_headers=True,
    )
    row["body_bytes"] = None  # not read
    return row
