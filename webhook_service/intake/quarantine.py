"""Quarantine: the webhook requests we refused (401 unverifiable, 400 unparseable, 413 too large), kept
for operators to read, replay or discard, and the budget that bounds how much of their bodies is kept.

How many bytes of refused request bodies quarantine may hold:

Anyone can POST to a webhook URL. Without a bound, a flood of unsigned 1 MiB requests would fill the
disk, and a full disk refuses valid webhooks too. Past the budget a refused request is still recorded
(method, URL, headers, reason, its size) but its body is not kept, and a log line says so; `prune`
frees the space again.

The total is read from the database at most every REFRESH_SECONDS and counted locally in between, so a
flood costs one SUM per interval per process, not one per request. Processes do not see each other's
counts between reads: together they may overshoot by what they admit within one interval.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import sqlalchemy as sa

from webhook_service.config.model import Connection
from webhook_service.database.engine import Database
from webhook_service.database.outage import UNAVAILABLE_ERRORS
from webhook_service.database.request_counts import request_counts
from webhook_service.database.tables import QuarantinedRequest
from webhook_service.intake import request_log
from webhook_service.intake.redaction import stored_form
from webhook_service.observability.logs import log
from webhook_service.providers.base import ProviderAdapter, WebhookRequest

logger = logging.getLogger("webhook_service.intake")

REFRESH_SECONDS = 10.0
# Refusals of a body that was not read whole (http.py): nothing of it is kept.
UNREAD_BODY_REASONS = frozenset({"body_too_large", "body_incomplete"})
STORED_BODY_BYTES = sa.select(sa.func.coalesce(sa.func.sum(sa.func.length(QuarantinedRequest.body)), 0))


class QuarantineBudget:
    def __init__(
        self, limit_bytes: int, *, refresh_seconds: float = REFRESH_SECONDS, clock: Callable[[], float] = time.monotonic
    ):
        self.limit_bytes = limit_bytes
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._used: int | None = None
        self._read_at = 0.0

    def admit(self, db: Database, size: int) -> bool:
        """Whether a body of `size` bytes may be kept; when it may, it is counted as kept."""
        with self._lock:
            now = self._clock()
            if self._used is None or now - self._read_at >= self._refresh_seconds:
                with db.reading() as session:
                    self._used = int(session.execute(STORED_BODY_BYTES).scalar_one())
                self._read_at = now
            if self._used + size > self.limit_bytes:
                return False
            self._used += size
            return True


class Quarantine:
    """Refused requests: kept (within the body budget) as they came, credentials redacted. Operators list,
    read and resolve them through database/quarantine.py."""

    def __init__(self, db: Database, budget: QuarantineBudget):
        self.db = db
        self.budget = budget

    def keep(
        self,
        adapter: ProviderAdapter,
        connection: Connection,
        webhook_request: WebhookRequest,
        request_id: str,
        http_status: int,
        reason_code: str,
        detail: str,
    ) -> None:
        """Record a refused request. Never raises for a database outage: the answer stays 401/400/413
        (the request is refused either way), and a log line keeps the fact."""
        record = stored_form(adapter, connection, webhook_request, request_id)
        body = record.body
        try:
            if body and not self.budget.admit(self.db, len(body)):
                # Said first, so that it survives the reason's length cap.
                detail = (
                    f"body of {len(body)} bytes not kept: quarantine holds its budget of "
                    f"{self.budget.limit_bytes} bytes (quarantine_max_bytes); {detail}"
                )
                log(
                    logger,
                    "quarantine_body_not_kept",
                    logging.WARNING,
                    request_id=request_id,
                    provider=connection.provider,
                    connection=connection.name,
                    bytes=len(body),
                )
                body = b""
            entry = QuarantinedRequest(
                request_id=request_id,
                received_at=record.received_at,
                provider=connection.provider,
                connection=connection.name,
                tenant_id=connection.tenant,
                method=record.method,
                url=record.url,
                headers=record.headers,
                body=body,
                remote_addr=record.remote_addr,
                http_status=http_status,
                reason_code=reason_code,
                reason=detail[:2000],
            )
            log_entry = request_log.entry(
                record,
                provider=connection.provider,
                connection=connection.name,
                tenant_id=connection.tenant,
                outcome=request_log.REFUSED_OUTCOMES.get(http_status, "refused"),
                http_status=http_status,
                reason_code=reason_code,
            )
            with self.db.transaction() as session:
                session.add(entry)
                session.flush()  # gives the entry its id, for the request log row
                log_entry.update(quarantine_id=entry.id, latency_ms=request_log.latency_ms(record.received_at))
                if reason_code in UNREAD_BODY_REASONS:  # its size is unknown
                    log_entry["body_bytes"] = None
                session.execute(request_log.INSERT_ENTRY, log_entry)
            request_counts(self.db).add(log_entry)
        except UNAVAILABLE_ERRORS as error:
            log(logger, "quarantine_unavailable", logging.ERROR, request_id=request_id, error=type(error).__name__)
