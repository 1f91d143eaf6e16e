"""Database tables. The database is the source of truth: the queue only wakes workers.

Migrations live in `migrations/versions/`; change a table here and add a revision there.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import cast

import sqlalchemy as sa
import uuid_utils
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, column_property, declared_attr, mapped_column, relationship


class UTCDateTime(sa.types.TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime; use datetime.now(timezone.utc)")
        return value.astimezone(UTC) if dialect.name != "sqlite" else value.astimezone(UTC).replace(tzinfo=None)

    def bind_processor(self, dialect):
        # What process_bind_param and the dialect's own processor do together, in one step: a webhook
        # binds seven times, and the two-step chain (SQLite's text formatting through a dict) was a
        # twentieth of its CPU. The values are the same (tests/database/test_utc_datetime.py).
        return _utc_sqlite_text if dialect.name == "sqlite" else _utc

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _utc(value):
    if value is None or value.tzinfo is UTC:
        return value
    if value.tzinfo is None:
        raise ValueError("naive datetime; use datetime.now(timezone.utc)")
    return value.astimezone(UTC)


def _utc_sqlite_text(value):
    """SQLAlchemy's SQLite DATETIME storage format, of the time in UTC."""
    value = _utc(value)
    if value is None:
        return None
    return "%04d-%02d-%02d %02d:%02d:%02d.%06d" % (  # noqa: UP031  # %-formatting: the fastest here
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond,
    )


JSONType = sa.JSON().with_variant(JSONB(), "postgresql")
# BIGINT on PostgreSQL; on SQLite only INTEGER PRIMARY KEY is an alias of the rowid.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


# Characters no database column can hold: NUL (PostgreSQL text) and unpaired UTF-16 surrogates (not
# encodable as UTF-8). Replaced in the normalized record; the raw request keeps the original bytes.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(value):
    """`value` with characters no database can store replaced by U+FFFD, in strings, lists and dicts."""
    if isinstance(value, str):
        if value.isascii() and "\x00" not in value:  # most values, at a tenth of the search's cost
            return value
        return _UNSTORABLE.sub("\ufffd", value)
    if isinstance(value, list):
        return [storable(item) for item in value]
    if isinstance(value, dict):
        return {storable(key): storable(item) for key, item in value.items()}
    return value


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    """A new row's id: a UUIDv7 (RFC 9562), whose first 48 bits are the time in milliseconds, so that the
    ids a table is given one after the other sit side by side in its unique index. With random ids
    (UUIDv4) every insert landed on a random page of an index that had outgrown the caches: on a
    database of a million messages PostgreSQL spent 0.398 ms on a batch statement of three webhooks
    against 0.336 with time-ordered ids.

    The ids one process makes within a millisecond keep their order by a 42-bit counter after the time,
    which starts at a random value in each millisecond; the last 32 bits are random in every id, so ids
    are still not guessable. (The `uuid6` package used before kept them in order by adding a millisecond
    to the time of each id made within the same one: above a thousand ids a second, a process's ids ran
    ahead of the clock, five minutes after 300,000 in one second.)"""
    return str(uuid_utils.uuid7())


class Base(DeclarativeBase):
    metadata = sa.MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class RequestRecord:
    """Columns shared by accepted and quarantined webhook requests: the request exactly as it came."""

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(sa.String(64))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    provider: Mapped[str] = mapped_column(sa.String(32))
    connection: Mapped[str | None] = mapped_column(sa.String(64))
    tenant_id: Mapped[str | None] = mapped_column(sa.String(64))
    method: Mapped[str] = mapped_column(sa.String(8))
    # The public URL the provider called (signatures cover it), with credentials redacted.
    url: Mapped[str] = mapped_column(sa.Text)
    # Header name/value pairs in arrival order; Authorization values are redacted.
    headers: Mapped[list] = mapped_column(JSONType)
    body: Mapped[bytes] = mapped_column(sa.LargeBinary)
    remote_addr: Mapped[str | None] = mapped_column(sa.String(64))


def one_request(table: sa.Table) -> sa.Select:
    """The row of one given request in a table of kept requests (raw or quarantined), found by its arrival
    time (indexed) and request id, with the provider and connection it came on."""
    return (
        sa.select(table.c.id)
        .where(
            table.c.received_at == sa.bindparam("received_at"),
            table.c.request_id == sa.bindparam("request_id"),
            table.c.provider == sa.bindparam("provider"),
            table.c.connection == sa.bindparam("connection"),
        )
        .limit(1)
    )


class RawRequest(RequestRecord, Base):
    """Every accepted webhook, kept whole so nothing a provider sent is ever lost."""

    __tablename__ = "raw_requests"


class QuarantinedRequest(RequestRecord, Base):
    """A webhook we refused (401 unverifiable, 400 unparseable, 413 too large), kept for operators."""

    __tablename__ = "quarantined_requests"
    # The console lists a tenant's quarantine. (Raw requests are only ever read by id or by age: migration
    # 0009 took their tenant index away, an entry every accepted webhook paid for and no query read.)
    __table_args__ = (sa.Index("ix_quarantined_requests_tenant_id", "tenant_id"),)
    http_status: Mapped[int] = mapped_column(sa.Integer)
    reason_code: Mapped[str] = mapped_column(sa.String(64))
    reason: Mapped[str] = mapped_column(sa.Text)
    # Set when an operator replays or discards it.
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolution: Mapped[str | None] = mapped_column(sa.String(32))

    @declared_attr
    def body_bytes(cls) -> Mapped[int]:
        """The body's length, read with every entry: the database counts it without reading the body, so
        a listing need not read fifty bodies of up to `webhook_max_body_bytes` each to show their sizes."""
        return column_property(sa.func.length(cls.body))


class RequestLogEntry(Base):
    """Every webhook request, whatever its outcome: when and where it came in, what it was answered, why,
    how long that took and what it produced. Accepted requests point at their raw request, refused ones
    at their quarantine entry (both keep the request whole); the others (duplicates, unknown endpoints,
    outages) keep their redacted headers here. Written in the same transaction as the raw request or
    the quarantine entry, and pruned with them (`retention_days`)."""

    __tablename__ = "request_log"
    __table_args__ = (
        sa.Index("ix_request_log_tenant_id_id", "tenant_id", "id"),
        # A message's requests (its console page, the request log's search by provider message id): without
        # it, those read the log backwards until they had found their rows, which for a message a day old
        # on a busy service outlasted the statement timeout. PostgreSQL only (GIN has no SQLite
        # counterpart). fastupdate off: with it on, the cleanup of GIN's pending list falls on whichever
        # insert fills it, and a group commit batch would wait for thousands of entries; off, each insert
        # pays for its own, about 2 us (bench/intake.py reports: the database's CPU per report did not move
        # beyond its noise, 0.19-0.24 ms before, 0.21-0.25 after).
        sa.Index(
            "ix_request_log_provider_message_ids",
            "provider_message_ids",
            postgresql_using="gin",
            postgresql_ops={"provider_message_ids": "jsonb_path_ops"},
            postgresql_with={"fastupdate": "off"},
        ).ddl_if(dialect="postgresql"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # The id of the request's JSON log lines and of its X-Request-Id answer header.
    request_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    provider: Mapped[str] = mapped_column(sa.String(32))
    connection: Mapped[str | None] = mapped_column(sa.String(64))
    # None for a URL no connection answers (it belongs to no tenant).
    tenant_id: Mapped[str | None] = mapped_column(sa.String(64))
    # accepted | duplicate | unauthorized | bad_request | too_large | unavailable | not_found | adapter_error
    outcome: Mapped[str] = mapped_column(sa.String(16))
    http_status: Mapped[int] = mapped_column(sa.Integer)
    reason_code: Mapped[str | None] = mapped_column(sa.String(64))
    # From arrival until the request's rows were written (the commit's flush to disk is not included;
    # the JSON log line's duration_ms is the whole answer). None for replays.
    latency_ms: Mapped[float | None] = mapped_column(sa.Float)
    remote_addr: Mapped[str | None] = mapped_column(sa.String(64))
    method: Mapped[str] = mapped_column(sa.String(8))
    # As stored in raw requests and quarantine: credentials redacted.
    url: Mapped[str] = mapped_column(sa.Text)
    # Header name/value pairs, secrets redacted; only when no raw request or quarantine entry keeps them.
    headers: Mapped[list | None] = mapped_column(JSONType)
    body_bytes: Mapped[int | None] = mapped_column(sa.BigInteger)
    raw_request_id: Mapped[int | None] = mapped_column(BigId)
    quarantine_id: Mapped[int | None] = mapped_column(BigId)
    # The quarantine entry an operator replayed, when this is a replay.
    replay_of: Mapped[int | None] = mapped_column(BigId)
    # What it produced (or, for a duplicate, the messages it repeated); its feed events are those of
    # these messages created at received_at.
    message_ids: Mapped[list] = mapped_column(JSONType, default=list)
    provider_message_ids: Mapped[list] = mapped_column(JSONType, default=list)
    # The senders' and recipients' numbers (E.164 where they are phone numbers), to find a number's requests.
    addresses: Mapped[list] = mapped_column(JSONType, default=list)


class RequestCount(Base):
    """Request log rows per minute, tenant, provider, connection and outcome: what the console's overview
    charts, without reading a day of requests (database/request_counts.py). "" stands for no tenant or
    no connection, as a key cannot hold NULL."""

    __tablename__ = "request_counts"
    minute: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)  # since the epoch
    tenant_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    provider: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    connection: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    outcome: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    count: Mapped[int] = mapped_column(sa.BigInteger)


class AuditEntry(Base):
    """What an operator did in the console (replay, discard, retry, sign-in): who, what, when, result."""

    __tablename__ = "audit_log"
    __table_args__ = (sa.Index("ix_audit_log_tenant_id_id", "tenant_id", "id"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(sa.String(255))
    action: Mapped[str] = mapped_column(sa.String(32))
    # quarantine | attachment | session
    target_type: Mapped[str] = mapped_column(sa.String(16))
    target_id: Mapped[str | None] = mapped_column(sa.String(64))
    tenant_id: Mapped[str | None] = mapped_column(sa.String(64))
    # ok | refused | failed | not_found
    result: Mapped[str] = mapped_column(sa.String(16))
    detail: Mapped[str] = mapped_column(sa.Text, default="")


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        # The key. On PostgreSQL led by the provider's id, so that a search by it without the provider (the
        # read API's `providerMessageId`, the console's) is a prefix of it (migration 0016). SQLite keeps
        # the order it was made with: its planner, which keeps no statistics, prefers the tenant's index
        # for that search anyway, and reordering would rebuild the table.
        sa.UniqueConstraint("provider_message_id", "provider", "tenant_id").ddl_if(dialect="postgresql"),
        sa.UniqueConstraint("tenant_id", "provider", "provider_message_id").ddl_if(dialect="sqlite"),
        sa.Index("ix_messages_tenant_seq", "tenant_id", "seq"),
        # A sender's messages, newest first (the read API's and the console's `from`): without it, read
        # from the tenant's newest message back, every one of them for a number seen rarely. No tenant in
        # it: an operator who sees every tenant asks without one, and a number's messages are nearly all
        # one tenant's. (Recipients are a JSON list; their filter still reads: docs/architecture.md.)
        sa.Index("ix_messages_from_number_seq", "from_number", "seq"),
    )
    # Internal order of arrival; also the list cursor.
    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(sa.String(36), unique=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(sa.String(64))
    provider: Mapped[str] = mapped_column(sa.String(32))
    connection: Mapped[str] = mapped_column(sa.String(64))
    provider_message_id: Mapped[str] = mapped_column(sa.String(255))
    direction: Mapped[str] = mapped_column(sa.String(8))
    from_number: Mapped[str | None] = mapped_column(sa.String(64))
    to_numbers: Mapped[list] = mapped_column(JSONType, default=list)
    text: Mapped[str | None] = mapped_column(sa.Text)
    subject: Mapped[str | None] = mapped_column(sa.Text)
    # False while we only know the message from status reports; its content arrives later, or never.
    has_content: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    status: Mapped[str | None] = mapped_column(sa.String(16))
    provider_status: Mapped[str | None] = mapped_column(sa.String(64))
    status_updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    occurred_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    extra: Mapped[dict] = mapped_column(JSONType, default=dict)
    # Indexed, as every key whose parent rows are deleted: a raw request's deletion (pruning, or a
    # duplicate's on the hot path) sets this to NULL, which without the index scans the whole table.
    raw_request_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("raw_requests.id", ondelete="SET NULL"), index=True
    )

    attachments: Mapped[list[Attachment]] = relationship(
        back_populates="message", order_by="Attachment.index", lazy="raise"
    )
    status_events: Mapped[list[StatusEventRow]] = relationship(
        back_populates="message", order_by="StatusEventRow.id", lazy="raise"
    )


class StatusEventRow(Base):
    __tablename__ = "status_events"
    __table_args__ = (sa.UniqueConstraint("message_seq", "dedupe_key"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    message_seq: Mapped[int] = mapped_column(sa.ForeignKey("messages.seq", ondelete="CASCADE"))
    dedupe_key: Mapped[str] = mapped_column(sa.String(128))
    status: Mapped[str] = mapped_column(sa.String(16))
    provider_status: Mapped[str] = mapped_column(sa.String(64))
    error_code: Mapped[str | None] = mapped_column(sa.String(64))
    error_message: Mapped[str | None] = mapped_column(sa.Text)
    occurred_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Whether this report moved the message's current status (late or stale reports do not).
    applied: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    # Indexed for the same reason as the message's.
    raw_request_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("raw_requests.id", ondelete="SET NULL"), index=True
    )

    message: Mapped[Message] = relationship(back_populates="status_events", lazy="raise")


ATTACHMENT_STATES = ("pending", "stored", "rejected", "failed")


class Attachment(Base):
    __tablename__ = "attachments"
    __table_args__ = (
        sa.UniqueConstraint("message_seq", "index"),
        sa.Index("ix_attachments_status_due", "status", "next_attempt_at"),
        # The console overview's attachments since a time (migration 0006).
        sa.Index("ix_attachments_created_at", "created_at", "status"),
    )
    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(sa.String(36), unique=True, default=new_id)
    message_seq: Mapped[int] = mapped_column(sa.ForeignKey("messages.seq", ondelete="CASCADE"))
    tenant_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    index: Mapped[int] = mapped_column(sa.Integer)
    source_url: Mapped[str] = mapped_column(sa.Text)
    name: Mapped[str | None] = mapped_column(sa.String(255))
    declared_content_type: Mapped[str | None] = mapped_column(sa.String(255))
    declared_size: Mapped[int | None] = mapped_column(sa.BigInteger)
    content_type: Mapped[str | None] = mapped_column(sa.String(255))
    size: Mapped[int | None] = mapped_column(sa.BigInteger)
    sha256: Mapped[str | None] = mapped_column(sa.String(64))
    status: Mapped[str] = mapped_column(sa.String(16), default="pending")
    reason_code: Mapped[str | None] = mapped_column(sa.String(64))
    reason: Mapped[str | None] = mapped_column(sa.Text)
    blob_key: Mapped[str | None] = mapped_column(sa.String(512))
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A worker owns the row until claimed_until; the token makes its final write conditional on it.
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claim_token: Mapped[str | None] = mapped_column(sa.String(36))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    message: Mapped[Message] = relationship(back_populates="attachments", lazy="raise")


class FeedEvent(Base):
    """The ordered feed behind GET /api/v1/events: a consumer reads everything exactly once by
    remembering the last id it saw. Readers read no further than the feed's head (see feed.py), below
    every id a transaction still running may hold."""

    __tablename__ = "events"
    __table_args__ = (sa.Index("ix_events_tenant_id", "tenant_id", "id"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(sa.String(64))
    type: Mapped[str] = mapped_column(sa.String(32))
    message_id: Mapped[str | None] = mapped_column(sa.String(36))
    attachment_id: Mapped[str | None] = mapped_column(sa.String(36))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    data: Mapped[dict] = mapped_column(JSONType)


class MediaUpload(Base):
    """A file a client uploaded through POST /api/v1/media to send by MMS: checked like an inbound
    attachment and kept in the blob store until the client deletes it (which revokes its URLs)."""

    __tablename__ = "media_uploads"
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    # The tenant's sending number the upload was made for, in E.164, and its configured id.
    phone_number: Mapped[str] = mapped_column(sa.String(32))
    phone_number_id: Mapped[str] = mapped_column(sa.String(255))
    # Sanitized; used only for Content-Disposition, never for the blob key.
    file_name: Mapped[str] = mapped_column(sa.String(255))
    # Sniffed (and, after a conversion, the converted file's): what is stored and served.
    content_type: Mapped[str] = mapped_column(sa.String(255))
    declared_content_type: Mapped[str | None] = mapped_column(sa.String(255))
    size: Mapped[int] = mapped_column(sa.BigInteger)
    sha256: Mapped[str] = mapped_column(sa.String(64))
    blob_key: Mapped[str] = mapped_column(sa.String(512))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # When the URL returned by the upload stops working (GET /api/v1/media/<id> signs fresh ones).
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Set by DELETE /api/v1/media/<id>, once the blob is gone.
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The API user or key that uploaded it.
    created_by: Mapped[str] = mapped_column(sa.String(255))


class Endpoint(Base):
    """A consumer's URL that the events of its tenant are POSTed to, signed (delivery/). Made through the
    API, or declared in the configuration (`config_name` set; the configuration owns it then)."""

    __tablename__ = "endpoints"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "config_name"),)
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    url: Mapped[str] = mapped_column(sa.Text)
    description: Mapped[str | None] = mapped_column(sa.Text)
    # The event types delivered; an empty list means all of them.
    event_types: Mapped[list] = mapped_column(JSONType, default=list)
    enabled: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    rate_limit_per_second: Mapped[int | None] = mapped_column(sa.Integer)
    # The Standard Webhooks signing secret ("whsec_..."), sealed (delivery/endpoint_secrets.py). After a
    # rotation the previous one also signs until previous_secret_expires_at, so that consumers can switch
    # without losing a delivery.
    secret: Mapped[str] = mapped_column(sa.String(512))
    previous_secret: Mapped[str | None] = mapped_column(sa.String(512))
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    config_name: Mapped[str | None] = mapped_column(sa.String(64))
    # The feed id up to which events have been considered for this endpoint: the deliveries of the
    # matching ones exist. New endpoints start at the end of the feed (older events come by replay).
    feed_position: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    # Health: when the current run of failures began (None while healthy), how many attempts in a row
    # failed, and until when the endpoint is left alone after failing several times in a row.
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    consecutive_failures: Mapped[int] = mapped_column(sa.Integer, default=0)
    paused_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled_reason: Mapped[str | None] = mapped_column(sa.Text)
    # A worker delivers to the endpoint until claimed_until; no other worker delivers to it meanwhile.
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claim_token: Mapped[str | None] = mapped_column(sa.String(36))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


DELIVERY_STATES = ("pending", "delivered", "failed")


class Delivery(Base):
    """One event for one endpoint: pending until a 2xx (delivered) or until its retries are spent or
    the endpoint is disabled (failed). A replay puts it back to pending."""

    __tablename__ = "deliveries"
    __table_args__ = (
        sa.UniqueConstraint("endpoint_id", "event_id"),
        # The endpoint's pending deliveries in feed order: what a worker delivers next.
        sa.Index("ix_deliveries_endpoint_status_event", "endpoint_id", "status", "event_id"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    endpoint_id: Mapped[str] = mapped_column(sa.ForeignKey("endpoints.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(sa.ForeignKey("events.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(sa.String(16), default="pending")
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The last attempt's HTTP status, or the code of what went wrong before one (timeout, ssrf_refused...).
    last_http_status: Mapped[int | None] = mapped_column(sa.Integer)
    last_error: Mapped[str | None] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Indexed for pruning (`prune` deletes the finished ones completed before its cutoff, a batch at a
    # time; without the index each batch scanned the table, the largest there is: an event per endpoint).
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)


class DeliveryAttempt(Base):
    """One POST of an event to an endpoint, as it went: kept for the consumer (GET .../attempts) and
    operators."""

    __tablename__ = "delivery_attempts"
    __table_args__ = (
        sa.Index("ix_delivery_attempts_endpoint_id", "endpoint_id", "id"),
        # The attempts of given events (GET .../attempts?eventId=, a console page of deliveries): by the
        # other index they were found reading the endpoint's attempts from its newest back, every one of
        # them for an event with none (a delivery given up unattempted) or an old one.
        sa.Index("ix_delivery_attempts_endpoint_id_event_id", "endpoint_id", "event_id"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    endpoint_id: Mapped[str] = mapped_column(sa.ForeignKey("endpoints.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(sa.BigInteger)
    attempt: Mapped[int] = mapped_column(sa.Integer)
    # Indexed for pruning, as the deliveries' completed_at.
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    # delivered, retry, failed (retries spent), disabled (410 Gone)
    outcome: Mapped[str] = mapped_column(sa.String(16))
    http_status: Mapped[int | None] = mapped_column(sa.Integer)
    error_code: Mapped[str | None] = mapped_column(sa.String(64))
    error: Mapped[str | None] = mapped_column(sa.Text)
    latency_ms: Mapped[int] = mapped_column(sa.Integer)
    # The first KiB of the answer's body, as text (undecodable bytes replaced).
    response_body: Mapped[str | None] = mapped_column(sa.Text)


class LeaseRecord(Base):
    """A named lease (see leases.py): work that one process of the whole deployment should do at a time,
    such as the minute's sweep, is done by whoever holds it until it expires."""

    __tablename__ = "leases"
    name: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    # Who took it last (host, process id): for operators reading the table; never compared.
    holder: Mapped[str] = mapped_column(sa.String(255))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RateLimitHit(Base):
    """One hit counted against a console rate limit (a sign-in attempt, an action) while its moving window
    lasts, shared by every web process of the deployment (database/rate_limits.py)."""

    __tablename__ = "rate_limit_hits"
    __table_args__ = (
        sa.Index("ix_rate_limit_hits_key_expires_at", "key", "expires_at"),
        sa.Index("ix_rate_limit_hits_expires_at", "expires_at"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # SHA-256 (hex) of the `limits` key (the limit, its window and whose hits they are): one length,
    # whatever a caller sent.
    key: Mapped[str] = mapped_column(sa.String(64))
    # The end of the hit's window: it no longer counts from then on, and may be deleted.
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


# The tables as Core objects, for the hot paths that run Core statements instead of ORM units of work.
RAW_REQUESTS = cast(sa.Table, RawRequest.__table__)
QUARANTINED_REQUESTS = cast(sa.Table, QuarantinedRequest.__table__)
MESSAGES = cast(sa.Table, Message.__table__)
STATUS_EVENTS = cast(sa.Table, StatusEventRow.__table__)
ATTACHMENTS = cast(sa.Table, Attachment.__table__)
EVENTS = cast(sa.Table, FeedEvent.__table__)
MEDIA_UPLOADS = cast(sa.Table, MediaUpload.__table__)
ENDPOINTS = cast(sa.Table, Endpoint.__table__)
DELIVERIES = cast(sa.Table, Delivery.__table__)
DELIVERY_ATTEMPTS = cast(sa.Table, DeliveryAttempt.__table__)
LEASES = cast(sa.Table, LeaseRecord.__table__)
REQUEST_LOG = cast(sa.Table, RequestLogEntry.__table__)
REQUEST_COUNTS = cast(sa.Table, RequestCount.__table__)
RATE_LIMIT_HITS = cast(sa.Table, RateLimitHit.__table__)
