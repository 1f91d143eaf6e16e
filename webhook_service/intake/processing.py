"""The intake's one procedure, shared by every provider, by operator replays and by the spool's drainer:
verify (Basic auth, then the provider's signature) -> parse -> store in one transaction. A refused request
is kept in quarantine with the reason. When the database cannot be reached, a live request that passed
verification and parsing goes to the spool (spool.py) and is acknowledged; without a spool, or with the
spool full, the outage is reported as such, so the caller answers 503 and the provider retries."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, Literal

from werkzeug.datastructures import Authorization, Headers

from webhook_service.config.connections import ConnectionDirectory
from webhook_service.config.model import Connection
from webhook_service.database.engine import Database
from webhook_service.database.outage import UNAVAILABLE_ERRORS
from webhook_service.database.quarantine import body_was_kept, quarantine_entry, resolve_entry
from webhook_service.database.tables import RequestRecord, storable
from webhook_service.intake import request_log
from webhook_service.intake.message_store import RawRequestRecord, StoreResult, raw_request_stored, store_webhook
from webhook_service.intake.quarantine import Quarantine
from webhook_service.intake.redaction import stored_form
from webhook_service.intake.spool import RequestSpool, SpoolUnavailable
from webhook_service.intake.spool_format import SpooledRequest
from webhook_service.model.events import Event
from webhook_service.model.phone import mask, normalize_address
from webhook_service.observability.logs import log
from webhook_service.observability.request_ids import request_id_bound
from webhook_service.providers.base import ParseFailed, ProviderAdapter, VerificationFailed, WebhookRequest
from webhook_service.providers.signatures import constant_time_equal

logger = logging.getLogger("webhook_service.intake")

MAX_PROVIDER_MESSAGE_ID = 255
# What a spooled request was answered (the provider's acknowledgement), as its quarantine entry records.
SPOOLED_ANSWER_STATUS = 200

# How much of a request is verified.
Check = Literal["all", "signature", "none"]
CHECK_ALL: Final = "all"  # live requests: Basic auth and the provider's signature
CHECK_SIGNATURE: Final = "signature"  # replays of stored requests, whose credentials were redacted
CHECK_NOTHING: Final = "none"  # an operator vouches for the request

# What becomes of a request the database cannot take.
Outage = Literal["spool", "answer", "stays_spooled"]
SPOOL: Final = "spool"  # live requests: to the spool, acknowledged (503 when it cannot take them)
ANSWER_503: Final = "answer"  # operator replays: 503, with the request log row that says so
# Drained from the spool: it stays there for the next pass. It was acknowledged when it was spooled, so
# no request log row says 503; its one row is written when it is stored (the drainer's log line says why
# it waits).
STAYS_SPOOLED: Final = "stays_spooled"


@dataclass
class IntakeResult:
    status: int
    # accepted | duplicate | spooled | unauthorized | bad_request | too_large | unavailable | not_found |
    # body_not_kept (and, for spooled requests when drained, quarantined)
    outcome: str
    reason_code: str | None = None
    detail: str | None = None  # for operators only, never sent to the caller
    store: StoreResult | None = None
    provider_message_ids: list[str] = field(default_factory=list)
    senders: list[str] = field(default_factory=list)  # masked


class Intake:
    def __init__(
        self,
        db: Database,
        adapters: Mapping[str, ProviderAdapter],
        connections: ConnectionDirectory,
        quarantine: Quarantine,
        *,
        region: str,
        on_new_attachments: Callable[[list[str]], None],
        spool: RequestSpool | None = None,
    ):
        self.db = db
        self.adapters = adapters
        self.connections = connections
        self.quarantine = quarantine
        self.region = region
        # Where verified requests wait while the database cannot be reached (None: they are answered 503).
        self.spool = spool
        # Wakes the download workers; the attachment rows are already committed as pending by then.
        self._on_new_attachments = on_new_attachments

    def process(
        self,
        adapter: ProviderAdapter,
        connection: Connection,
        webhook_request: WebhookRequest,
        request_id: str,
        *,
        check: Check = CHECK_ALL,
        quarantine_refused: bool = True,
        on_outage: Outage = SPOOL,
        replay_of: int | None = None,
    ) -> IntakeResult:
        """Verify, parse and store one request. Also used by operators to replay a quarantined one, and
        by the drainer to store a spooled one (neither goes back to the spool: see `on_outage`)."""
        adapter_bug: Exception | None = None
        try:
            events, refused = _verified_events(adapter, connection, webhook_request, check)
        except Exception as error:  # noqa: BLE001  # re-raised below, once the request is kept
            # An adapter bug: keep the request (an operator replays it once the bug is fixed), then let
            # the app's error handler log the traceback and answer 500, so the provider retries too.
            adapter_bug = error
            detail = f"{type(error).__name__} in the {adapter.name} adapter: {error}"
            events, refused = [], IntakeResult(500, "adapter_error", "adapter_error", detail=detail)
        if refused is not None:
            if quarantine_refused:
                reason_code = refused.reason_code or refused.outcome
                self.quarantine.keep(
                    adapter, connection, webhook_request, request_id, refused.status, reason_code, refused.detail or ""
                )
            if adapter_bug is not None:
                raise adapter_bug
            return refused
        provider_ids = list(dict.fromkeys(event.provider_message_id for event in events))
        masked = (mask(normalize_address(event.from_, self.region)) for event in events)
        senders = [sender for sender in dict.fromkeys(masked) if sender]
        record = stored_form(adapter, connection, webhook_request, request_id)
        log_entry = request_log.entry(
            record,
            provider=connection.provider,
            connection=connection.name,
            tenant_id=connection.tenant,
            outcome="accepted",
            http_status=200,
        )
        log_entry["replay_of"] = replay_of
        try:
            stored = store_webhook(self.db, connection, record, events, self.region, log_entry)
        except UNAVAILABLE_ERRORS as error:
            log(logger, "database_unavailable", logging.ERROR, request_id=request_id, error=type(error).__name__)
            if on_outage == SPOOL and self.spool is not None:
                # Its request log row is written when the drainer stores it.
                return self._spool(connection, record, provider_ids, senders)
            if on_outage == STAYS_SPOOLED:
                return IntakeResult(503, "unavailable", "database_unavailable")
            unavailable = dict(log_entry, outcome="unavailable", http_status=503, reason_code="database_unavailable")
            unavailable["headers"] = request_log.bounded_headers(record.headers)  # nothing else keeps them
            request_log.record_alone(self.db, unavailable)
            return IntakeResult(
                503, "unavailable", "database_unavailable", provider_message_ids=provider_ids, senders=senders
            )
        if stored.new_attachment_ids:
            self._on_new_attachments(stored.new_attachment_ids)
        return IntakeResult(
            200,
            "duplicate" if stored.duplicate else "accepted",
            store=stored,
            provider_message_ids=provider_ids,
            senders=senders,
        )

    def _spool(
        self, connection: Connection, record: RawRequestRecord, provider_ids: list[str], senders: list[str]
    ) -> IntakeResult:
        """Keep a verified, parsed request the database could not take, to be stored once it answers."""
        assert self.spool is not None
        spooled = SpooledRequest(connection.provider, connection.name, connection.tenant, record, datetime.now(UTC))
        try:
            spool_bytes = self.spool.append(spooled)
        except SpoolUnavailable as refusal:
            log(
                logger,
                "spool_unavailable",
                logging.ERROR,
                request_id=record.request_id,
                reason=refusal.reason_code,
                detail=refusal.detail,
            )
            return IntakeResult(
                503,
                "unavailable",
                refusal.reason_code,
                refusal.detail,
                provider_message_ids=provider_ids,
                senders=senders,
            )
        log(logger, "spooled", logging.WARNING, request_id=record.request_id, spool_bytes=spool_bytes)
        return IntakeResult(200, "spooled", "database_unavailable", provider_message_ids=provider_ids, senders=senders)

    def store_spooled(self, spooled: SpooledRequest) -> IntakeResult:
        """Store a request the spool kept during an outage, at its own arrival time and with its own
        request id, through `process`: parsed again, not verified again (it was, before it was spooled,
        and its signature's timestamp has expired since). Idempotent: a request stored already, in full
        or as a duplicate, changes nothing. A request that can no longer be stored as a message (its
        connection was removed or moved to another tenant, it no longer parses) goes to quarantine with
        the reason. A 503 result: the database is still unreachable, and the request stays in the spool."""
        record = spooled.record
        adapter = self.adapters.get(spooled.provider)
        connection = self.connections.find(spooled.provider, spooled.connection) if adapter else None
        try:
            if self.quarantine.holds(spooled.provider, spooled.connection, record):
                return IntakeResult(SPOOLED_ANSWER_STATUS, "duplicate", "already_quarantined")
            # Before the connection is looked at: one stored before it was removed or moved (a drainer that
            # stopped before noting so meets it again) is stored, and is passed as such.
            if raw_request_stored(self.db, spooled.provider, spooled.connection, record):
                return IntakeResult(200, "duplicate", "already_stored")
            if adapter is None or connection is None:
                return self._quarantine_spooled(
                    spooled,
                    "connection_removed",
                    f"its connection {spooled.provider}/{spooled.connection} is no longer configured",
                )
            if connection.tenant != spooled.tenant:
                # Stored through the connection as it is now, it would be the other tenant's message; under
                # the tenant it came for, by a connection that no longer serves that tenant. Neither is
                # safe to decide here: an operator does (the entry keeps the tenant it arrived for).
                return self._quarantine_spooled(
                    spooled,
                    "tenant_changed",
                    f"its connection {spooled.provider}/{spooled.connection} now belongs to tenant"
                    f" {connection.tenant}, not to tenant {spooled.tenant}, for which it arrived",
                )
            try:
                result = self.process(
                    adapter,
                    connection,
                    kept_request(record),
                    record.request_id,
                    check=CHECK_NOTHING,
                    quarantine_refused=False,
                    on_outage=STAYS_SPOOLED,
                )
            except UNAVAILABLE_ERRORS:
                raise
            except Exception as error:  # noqa: BLE001  # an adapter bug: the request is kept, the drain goes on
                log(logger, "spooled_request_adapter_error", logging.ERROR, request_id=record.request_id, exc_info=True)
                detail = f"{type(error).__name__} in the {adapter.name} adapter: {error}"
                return self._quarantine_spooled(spooled, "adapter_error", detail)
            if result.status in (400, 401):
                return self._quarantine_spooled(spooled, result.reason_code or result.outcome, result.detail or "")
            return result
        except UNAVAILABLE_ERRORS as error:
            log(logger, "database_unavailable", logging.ERROR, request_id=record.request_id, error=type(error).__name__)
            return IntakeResult(503, "unavailable", "database_unavailable")

    def _quarantine_spooled(self, spooled: SpooledRequest, reason_code: str, detail: str) -> IntakeResult:
        detail = f"spooled during a database outage and acknowledged, then not stored: {detail}"
        self.quarantine.keep_verified(
            spooled.provider,
            spooled.connection,
            spooled.tenant,
            spooled.record,
            SPOOLED_ANSWER_STATUS,
            reason_code,
            detail,
        )
        return IntakeResult(SPOOLED_ANSWER_STATUS, "quarantined", reason_code, detail)

    def replay(self, entry_id: int, *, trust: bool = False) -> IntakeResult | None:
        """Run a quarantined request through the intake again and, once stored, mark it replayed. Its
        signature is re-checked against the current secrets at its original arrival time; its stored
        credentials were redacted, so Basic-auth or token-only connections need `trust` (the operator
        vouches for it). None when the entry, or its connection, no longer exists; a 409 `body_not_kept`,
        changing nothing, for an entry kept without its body (there is nothing to replay); a 409
        `tenant_changed`, changing nothing, while its connection belongs to another tenant than the one
        the request arrived for (stored through it, it would be that other tenant's message: the reason a
        spooled request is quarantined as `tenant_changed`). Once the connection is back with that tenant,
        it replays."""
        row = quarantine_entry(self.db, entry_id)
        adapter = self.adapters.get(row.provider) if row else None
        connection = self.connections.find(row.provider, row.connection) if row and adapter else None
        if row is None or adapter is None or connection is None:
            return None
        if not body_was_kept(row):
            return IntakeResult(409, "body_not_kept", "body_not_kept", detail=f"its body was not kept ({row.reason})")
        if row.tenant_id is not None and connection.tenant != row.tenant_id:
            detail = (
                f"its connection {row.provider}/{row.connection} now belongs to tenant {connection.tenant}, not to"
                f" tenant {row.tenant_id}, for which it arrived: give the connection back to tenant {row.tenant_id}"
                " to replay it, or discard it"
            )
            return IntakeResult(409, "tenant_changed", "tenant_changed", detail=detail)
        request_id = f"replay-{entry_id}"
        with request_id_bound(request_id):  # the replay's lines, as the stored request, carry its own id
            result = self.process(
                adapter,
                connection,
                kept_request(row),
                request_id,
                check=CHECK_NOTHING if trust else CHECK_SIGNATURE,
                quarantine_refused=False,
                on_outage=ANSWER_503,
                replay_of=entry_id,
            )
        if result.status == 200:
            resolve_entry(self.db, entry_id, "replayed")
        return result


def kept_request(kept: RequestRecord | RawRequestRecord) -> WebhookRequest:
    """A stored request (quarantined, or spooled) as the intake takes requests."""
    return WebhookRequest(
        method=kept.method,
        url=kept.url,
        headers=Headers([(name, value) for name, value in kept.headers]),
        body=kept.body,
        received_at=kept.received_at,
        remote_addr=kept.remote_addr,
    )


def _verified_events(
    adapter: ProviderAdapter, connection: Connection, webhook_request: WebhookRequest, check: Check
) -> tuple[list[Event], IntakeResult | None]:
    """The request's events, or the refusal (401/400) that stops it."""
    try:
        if check == CHECK_ALL:
            authenticate(adapter, connection, webhook_request)
        elif check == CHECK_SIGNATURE and connection.verify and connection.secrets:
            adapter.verify(webhook_request, connection)
    except VerificationFailed as failure:
        return [], IntakeResult(401, "unauthorized", failure.code, detail=failure.detail)
    try:
        events = adapter.parse(webhook_request, connection)
        _check_identifiers(events)
    except ParseFailed as failure:
        return [], IntakeResult(400, "bad_request", failure.code, detail=failure.detail)
    return events, None


def _check_identifiers(events: list[Event]) -> None:
    """Provider message ids are keys: an empty or absurdly long one cannot identify a message."""
    for event in events:
        identifier = event.provider_message_id
        if not identifier or len(identifier) > MAX_PROVIDER_MESSAGE_ID or storable(identifier) != identifier:
            raise ParseFailed(
                "invalid_message_id", f"provider message id must be 1 to {MAX_PROVIDER_MESSAGE_ID} storable characters"
            )


def authenticate(adapter: ProviderAdapter, connection: Connection, webhook_request: WebhookRequest) -> None:
    """Basic auth (when the connection lists credentials), then the provider's own signature (when the
    connection has secrets). Development connections with verify = false skip both."""
    if not connection.verify:
        return
    if connection.basic_auth:
        _check_basic_auth(connection, webhook_request)
    if connection.secrets:
        adapter.verify(webhook_request, connection)


def _check_basic_auth(connection: Connection, webhook_request: WebhookRequest) -> None:
    header = webhook_request.headers.get("Authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        raise VerificationFailed("missing_basic_auth", "no Basic Authorization header")
    offered = Authorization.from_header(header)
    if offered is None:
        raise VerificationFailed("malformed_basic_auth", "Authorization header is not valid Basic credentials")
    pair = f"{offered.username}:{offered.password}"
    # Compare against every accepted pair (rotation) without stopping early.
    matches = [constant_time_equal(accepted, pair) for accepted in connection.basic_auth]
    if not any(matches):
        raise VerificationFailed("invalid_basic_auth", "Basic credentials match no accepted pair")
