"""Recording a verified webhook: raw request, messages, status history, pending attachments and feed
events, all in one transaction, idempotently.

Idempotency comes from unique keys, not from looking first: a message is (tenant, provider, provider
message id), a status report is (message, dedupe key). Rows are inserted with ON CONFLICT DO NOTHING
and then locked, so two copies of one webhook arriving at the same moment on different workers
serialize on the message row and the second finds nothing new to do.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from . import feed, statuses
from .canonical import Event, MessageEvent, StatusEvent
from .config import Connection
from .db import Database
from .models import Attachment, FeedEvent, Message, RawRequest, StatusEventRow, new_id
from .phone import normalize_address
from .serializers import attachment_json, message_json

# Providers send at most 10; more is a malformed or hostile payload. The raw request keeps them all.
MAX_ATTACHMENTS_PER_MESSAGE = 20


@dataclass
class StoreResult:
    duplicate: bool
    raw_request_id: int | None = None
    message_ids: list[str] = field(default_factory=list)
    # Attachments created by this request, to be handed to the download queue after commit.
    new_attachment_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RawRequestRecord:
    """The request as it will be stored (credentials already redacted)."""
    request_id: str
    method: str
    url: str
    headers: list[list[str]]
    body: bytes
    remote_addr: str | None
    received_at: datetime


class _NothingNew(Exception):
    """Raised inside the transaction to roll it back when every event was already known."""


def store_webhook(db: Database, connection: Connection, raw: RawRequestRecord, events: list[Event],
                  region: str) -> StoreResult:
    result = StoreResult(duplicate=False)
    try:
        with db.transaction() as session:
            raw_row = RawRequest(
                request_id=raw.request_id, received_at=raw.received_at, provider=connection.provider,
                connection=connection.name, tenant_id=connection.tenant, method=raw.method, url=raw.url,
                headers=raw.headers, body=raw.body, remote_addr=raw.remote_addr)
            session.add(raw_row)
            session.flush()
            recorder = _Recorder(session, connection, raw_row.id, raw.received_at, region)
            for event in events:
                recorder.record(event)
            # A request with no events (a provider event type we do not map) is still kept whole.
            if events and not recorder.changed:
                raise _NothingNew
            feed.append(session, recorder.feed_events)
            result.raw_request_id = raw_row.id
            result.message_ids = recorder.message_ids
            result.new_attachment_ids = recorder.new_attachment_ids
    except _NothingNew:
        result.duplicate = True
        result.message_ids = recorder.message_ids
    return result


class _Recorder:
    def __init__(self, session: Session, connection: Connection, raw_request_id: int, now: datetime,
                 region: str):
        self.session = session
        self.connection = connection
        self.raw_request_id = raw_request_id
        self.now = now
        self.region = region
        self.changed = False
        self.feed_events: list[FeedEvent] = []
        self.message_ids: list[str] = []
        self.new_attachment_ids: list[str] = []

    def record(self, event: Event) -> None:
        if isinstance(event, MessageEvent):
            self._record_message(event)
        else:
            self._record_status(event)

    # Messages ---------------------------------------------------------------------------------
    def _record_message(self, event: MessageEvent) -> None:
        message = self._locked_message(event.provider_message_id, event.direction)
        if message.has_content:
            return  # a retry or a second notification of a message we already have
        message.direction = event.direction
        message.from_number = normalize_address(event.from_, self.region)
        message.to_numbers = _addresses(event.to, self.region)
        message.text = event.text
        message.subject = event.subject
        message.occurred_at = event.occurred_at
        message.extra = dict(event.extra)
        message.has_content = True
        message.raw_request_id = self.raw_request_id
        if len(event.media) > MAX_ATTACHMENTS_PER_MESSAGE:
            message.extra["mediaNotFetched"] = len(event.media) - MAX_ATTACHMENTS_PER_MESSAGE
        if event.direction == "inbound" and message.status is None:
            message.status = statuses.RECEIVED
            message.status_updated_at = event.occurred_at or self.now
        attachments = [
            Attachment(id=new_id(), message_seq=message.seq, tenant_id=message.tenant_id, index=index,
                       source_url=media.url, name=media.name, declared_content_type=media.content_type,
                       declared_size=media.size, status="pending", next_attempt_at=self.now,
                       created_at=self.now, updated_at=self.now)
            for index, media in enumerate(event.media[:MAX_ATTACHMENTS_PER_MESSAGE])
        ]
        self.session.add_all(attachments)
        self.session.flush()
        self.new_attachment_ids.extend(a.id for a in attachments)
        self.changed = True
        if event.direction == "inbound":
            history = self.session.scalars(
                sa.select(StatusEventRow).where(StatusEventRow.message_seq == message.seq)
                .order_by(StatusEventRow.id)).all()
            self.feed_events.append(FeedEvent(
                tenant_id=message.tenant_id, type=feed.MESSAGE_RECEIVED, message_id=message.id,
                created_at=self.now, data=message_json(message, attachments, list(history))))

    # Status reports ---------------------------------------------------------------------------
    def _record_status(self, event: StatusEvent) -> None:
        message = self._locked_message(event.provider_message_id, "outbound")
        if not message.has_content and message.from_number is None and (event.from_ or event.to):
            # The report is all we know of this message so far: keep its addresses.
            message.from_number = normalize_address(event.from_, self.region)
            message.to_numbers = _addresses(event.to, self.region)
        dedupe_key = event.event_id or _derived_dedupe_key(event)
        inserted = self.session.execute(
            _insert(self.session, StatusEventRow.__table__)
            .values(message_seq=message.seq, dedupe_key=dedupe_key[:128], status=event.status,
                    provider_status=(event.provider_status or "")[:64],
                    error_code=(event.error_code or None) and event.error_code[:64],
                    error_message=event.error_message, occurred_at=event.occurred_at,
                    received_at=self.now, applied=False, raw_request_id=self.raw_request_id)
            .on_conflict_do_nothing(index_elements=["message_seq", "dedupe_key"])
            .returning(StatusEventRow.__table__.c.id)
        ).scalar_one_or_none()
        if inserted is None:
            return  # this very report was recorded before
        applied = statuses.advances(message.status, event.status)
        if applied:
            message.status = event.status
            message.provider_status = event.provider_status
            message.status_updated_at = event.occurred_at or self.now
            self.session.execute(sa.update(StatusEventRow).where(StatusEventRow.id == inserted)
                                 .values(applied=True))
        self.changed = True
        self.feed_events.append(FeedEvent(
            tenant_id=message.tenant_id, type=feed.MESSAGE_STATUS, message_id=message.id,
            created_at=self.now, data={
                "messageId": message.id,
                "provider": message.provider,
                "providerMessageId": message.provider_message_id,
                "status": event.status,
                "providerStatus": event.provider_status,
                "errorCode": event.error_code,
                "errorMessage": event.error_message,
                "occurredAt": event.occurred_at.isoformat().replace("+00:00", "Z") if event.occurred_at else None,
                "applied": applied,
                "currentStatus": message.status,
            }))

    # Shared -----------------------------------------------------------------------------------
    def _locked_message(self, provider_message_id: str, direction: str) -> Message:
        """The message row for this provider id, created if new, locked for this transaction."""
        table = Message.__table__
        key = (Message.tenant_id == self.connection.tenant,
               Message.provider == self.connection.provider,
               Message.provider_message_id == provider_message_id)
        self.session.execute(
            _insert(self.session, table)
            .values(id=new_id(), tenant_id=self.connection.tenant, provider=self.connection.provider,
                    connection=self.connection.name, provider_message_id=provider_message_id,
                    direction=direction, to_numbers=[], has_content=False, received_at=self.now,
                    updated_at=self.now, extra={}, raw_request_id=self.raw_request_id)
            .on_conflict_do_nothing(index_elements=["tenant_id", "provider", "provider_message_id"]))
        message = self.session.scalars(sa.select(Message).where(*key).with_for_update()).one()
        if message.id not in self.message_ids:
            self.message_ids.append(message.id)
        return message


def _insert(session: Session, table: sa.Table):
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def _addresses(values, region: str) -> list[str]:
    return [address for address in (normalize_address(v, region) for v in values) if address]


def _derived_dedupe_key(event: StatusEvent) -> str:
    """Retries of one report are identical; different reports differ in status, error or time."""
    occurred = event.occurred_at.isoformat() if event.occurred_at else ""
    basis = f"{event.provider_status}|{event.error_code or ''}|{occurred}"
    return "d:" + hashlib.sha256(basis.encode()).hexdigest()[:40]


def attachment_event(attachment: Attachment, message_id: str, event_type: str, now: datetime) -> FeedEvent:
    """The feed entry for an attachment's final state (written by the download worker)."""
    data = attachment_json(attachment)
    data["messageId"] = message_id
    return FeedEvent(tenant_id=attachment.tenant_id, type=event_type, message_id=message_id,
                     attachment_id=attachment.id, created_at=now, data=data)
