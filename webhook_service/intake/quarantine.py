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
from webhook_service.database.quarantine import BUDGET_NOTE, UNREAD_BODY_REASONS
from webhook_service.database.request_counts import request_counts
from webhook_service.database.tables import QUARANTINED_REQUESTS, QuarantinedRequest, one_request
from webhook_service.intake import request_log
from webhook_service.intake.message_store import RawRequestRecord
from webhook_service.intake.redaction import stored_form
from webhook_service.observability.logs import log
from webhook_service.providers.base import ProviderAdapter, WebhookRequest

logger = logging.getLogger("webhook_service.intake")

REFRESH_SECONDS = 10.0
SELECT_QUARANTINED_REQUEST = one_request(QUARANTINED_REQUESTS)
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
                    BUDGET_NOTE.format(size=len(body))
                    + f"quarantine holds its budget of {self.budget.limit_bytes} bytes (quarantine_max_bytes); {detail}"
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
            log_entry = request_log.entry(
                record,
                provider=connection.provider,
                connection=connection.name,
                tenant_id=connection.tenant,
                outcome=request_log.REFUSED_OUTCOMES.get(http_status, "refused"),
                http_status=http_status,
                reason_code=reason_code,
            )
            if reason_code in UNREAD_BODY_REASONS:  # its size is unknown
                log_entry["body_bytes"] = None
            self._insert(
                connection.provider,
                connection.name,
                connection.tenant,
                record,
                body,
                http_status,
                reason_code,
                detail,
                log_entry,
            )
        except UNAVAILABLE_ERRORS as error:
            log(logger, "quarantine_unavailable", logging.ERROR, request_id=request_id, error=type(error).__name__)

    def keep_verified(
        self,
        provider: str,
        connection_name: str,
        tenant: str,
        record: RawRequestRecord,
        http_status: int,
        reason_code: str,
        detail: str,
    ) -> None:
        """Record a request that was verified and acknowledged but cannot be stored as a message (a
        spooled request whose connection is gone, or that no longer parses): whole, outside the budget
        for refused requests (the spool's own budget bounded it), and raising UNAVAILABLE_ERRORS when
        the database cannot take it, so that the caller keeps it. Its request log row is written with it
        (outcome `quarantined`, answered `http_status`): none was when it was acknowledged, the database
        being down."""
        log_entry = request_log.entry(
            record,
            provider=provider,
            connection=connection_name,
            tenant_id=tenant,
            outcome="quarantined",
            http_status=http_status,
            reason_code=reason_code,
        )
        self._insert(
            provider, connection_name, tenant, record, record.body, http_status, reason_code, detail, log_entry
        )

    def _insert(
        self,
        provider: str,
        connection_name: str,
        tenant: str,
        record: RawRequestRecord,
        body: bytes,
        http_status: int,
        reason_code: str,
        detail: str,
        log_entry: dict | None,
    ) -> None:
        """The entry and, for a refused request, its request log row, in one transaction."""
        entry = QuarantinedRequest(
            request_id=record.request_id,
            received_at=record.received_at,
            provider=provider,
            connection=connection_name,
            tenant_id=tenant,
            method=record.method,
            url=record.url,
            headers=record.headers,
            body=body,
            remote_addr=record.remote_addr,
            http_status=http_status,
            reason_code=reason_code,
            reason=detail[:2000],
        )
        with self.db.transaction() as session:
            session.add(entry)
            if log_entry is not None:
                session.flush()  # gives the entry its id, for the request log row
                log_entry.update(quarantine_id=entry.id, latency_ms=request_log.latency_ms(record.received_at))
                session.execute(request_log.INSERT_ENTRY, log_entry)
        if log_entry is not None:
            request_counts(self.db).add(log_entry)

    def holds(self, provider: str, connection_name: str, record: RawRequestRecord) -> bool:
        """Whether this very request (same arrival time and request id) is in quarantine already: a spool
        drainer that kept it there and was killed before noting so must not keep it twice."""
        parameters = {"received_at": record.received_at, "request_id": record.request_id}
        with self.db.reading() as session:
            found = session.execute(
                SELECT_QUARANTINED_REQUEST, {**parameters, "provider": provider, "connection": connection_name}
            ).first()
        return found is not None
