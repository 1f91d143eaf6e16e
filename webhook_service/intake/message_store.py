"""Recording a verified webhook: raw request, messages, status history, pending attachments and feed
events, all in one transaction, idempotently.

Idempotency comes from unique keys, not from looking first: a message is (tenant, provider, provider
message id), a status report is (message, dedupe key). Rows are inserted with ON CONFLICT DO NOTHING
and, when they already existed, locked, so two copies of one webhook arriving at the same moment on
different workers serialize on the message row and the second finds nothing new to do.

This is the webhook's hot path and, on SQLite, every writer takes turns: everything that can be
computed before the transaction (ids, normalized addresses, rows, feed snapshots) is, and the
transaction itself is a handful of Core statements. For what a webhook most often brings (messages new
to us) the rows are even converted for the driver before (`PreparedStatement.bind`): the transaction
gives them only the ids it learns (the raw request's), and falls back to building them when it finds
something else (a message it has already, a status report).

On SQLite the raw request's id and the messages' seq are claimed (`claim_ids`) rather than returned by
their inserts, and in a group commit's first run the inserts of such a webhook are put off to the end of
the batch, with every other unit's in one statement per table (`inserts_checked_at_commit`): a message
there already then makes the batch run again, each webhook on its own, as above. A status report is
bound ahead for its most common case too, a message new to us (the first report of a message a business
sent through the provider): the message's insert carries the report's status, so nothing is updated,
and in a batch's first run the report, which cannot have been recorded before, goes in with the
batch's others at its end (the same report twice in the batch makes it run again).

On PostgreSQL a webhook whose events are all messages is encoded whole instead (`encode_whole`), as one
JSON document, and in the group commit's first run its batch's documents go in with one statement
(intake/postgres_batch.py); a message there already makes the batch run again in the same way. So does a
webhook whose events are all status reports, each of a different message (`encode_reports`,
intake/postgres_reports.py); a report recorded before makes its batch run again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from webhook_service.config.model import Connection
from webhook_service.database import feed
from webhook_service.database.engine import (
    ORDER_LAST,
    Database,
    DiscardUnit,
    InsertConflict,
    claim_ids,
    insert_at_commit,
    inserts_checked_at_commit,
    transaction_notes,
)
from webhook_service.database.prepared import BoundRow, PreparedStatement
from webhook_service.database.request_counts import request_counts
from webhook_service.database.tables import (
    ATTACHMENTS,
    MESSAGES,
    RAW_REQUESTS,
    REQUEST_LOG,
    STATUS_EVENTS,
    new_id,
    one_request,
    storable,
)
from webhook_service.intake.postgres_batch import MESSAGE_COLUMNS, RAW_COLUMNS, NewMessagesWebhook, insert_webhooks
from webhook_service.intake.postgres_reports import StatusReportsWebhook, insert_reports
from webhook_service.model import statuses
from webhook_service.model.events import Event, MessageEvent, StatusEvent
from webhook_service.model.message_json import iso, message_json
from webhook_service.model.phone import normalize_address
from webhook_service.providers.base import looks_secret
from webhook_service.providers.signatures import caller_bytes

# Providers send at most 10; more is a malformed or hostile payload. The raw request keeps them all.
MAX_ATTACHMENTS_PER_MESSAGE = 20
# A declared size beyond this is nonsense (and would overflow the column); it is recorded as unknown.
MAX_DECLARED_SIZE = 2**53

MESSAGE_KEY = ["tenant_id", "provider", "provider_message_id"]
# A redacted value, as intake/redaction.py writes it (which imports this module, so it is spelt again).
_REDACTED = "[redacted]"

# Statements are built once and given their values at execution: building them per request (values(),
# cache keys) cost more than running them. The ones every webhook runs are prepared (database/prepared.py).
INSERT_RAW_REQUEST = PreparedStatement(sa.insert(RAW_REQUESTS).returning(RAW_REQUESTS.c.id), kept_prepared=True)
# SQLite: with its id claimed.
INSERT_RAW_REQUEST_ROW = PreparedStatement(sa.insert(RAW_REQUESTS))
INSERT_ATTACHMENTS = PreparedStatement(sa.insert(ATTACHMENTS))
SELECT_STORED_RAW_REQUEST = one_request(RAW_REQUESTS)
INSERT_LOG_ENTRY = PreparedStatement(sa.insert(REQUEST_LOG))
DELETE_RAW_REQUEST = PreparedStatement(sa.delete(RAW_REQUESTS).where(RAW_REQUESTS.c.id == sa.bindparam("raw_id")))
SELECT_HISTORY = (
    sa.select(STATUS_EVENTS).where(STATUS_EVENTS.c.message_seq == sa.bindparam("seq")).order_by(STATUS_EVENTS.c.id)
)


# A message's columns, by its seq: the parameters are `message_seq` and the columns to set, every one
# given (`updated_at` too: its `onupdate` default is not applied here). Built once rather than per report
# or message: building the construct and compiling it (its values' JSON is not cacheable) cost more than
# running it, and on SQLite every writer waits meanwhile.
UPDATE_MESSAGE = PreparedStatement(sa.update(MESSAGES).where(MESSAGES.c.seq == sa.bindparam("message_seq")))

# The columns of its message a status report needs (`_Recorder._record_status`).
_FOR_STATUS = ("seq", "id", "status", "has_content", "from_number")


def _raw_request_with_message(*, reading_for_status: bool = False) -> PreparedStatement:
    """PostgreSQL: the raw request and the webhook's message in one statement, one round trip instead of
    two (each costs psycopg ~65 us of CPU). The raw request is inserted whatever happens to the message;
    the message takes the raw request's id, and on a conflict inserts nothing. Returns (raw request id,
    message seq or None on a conflict). The message's values are `message_<column>` (every column but
    `seq` and `raw_request_id`), the raw request's are its columns' names.

    `reading_for_status`: for a status report, whose message is its placeholder; the statement also
    returns the `_FOR_STATUS` columns of the message that was there already, read and locked (FOR UPDATE),
    a round trip less again. They are None when the placeholder was inserted, and also when the message
    was inserted by a transaction that committed while this statement ran (its snapshot, taken as it
    began, does not hold that row): the caller then reads it on its own."""
    raw_values = {column: sa.bindparam(column, type_=RAW_REQUESTS.c[column].type) for column in RAW_COLUMNS}
    raw = sa.insert(RAW_REQUESTS).values(raw_values).returning(RAW_REQUESTS.c.id).cte("raw")
    values = {column: sa.bindparam(f"message_{column}", type_=MESSAGES.c[column].type) for column in MESSAGE_COLUMNS}
    message = (
        postgresql.insert(MESSAGES)
        .from_select(
            [*MESSAGE_COLUMNS, "raw_request_id"], sa.select(*values.values(), raw.c.id), include_defaults=False
        )
        .on_conflict_do_nothing(index_elements=MESSAGE_KEY)
        .returning(MESSAGES.c.seq)
        .cte("message")
    )
    # A data-modifying WITH runs once whether or not the final SELECT reads it: `raw` always has its row.
    returned = sa.select(raw.c.id, sa.select(message.c.seq).scalar_subquery())
    if not reading_for_status:
        return PreparedStatement(returned, kept_prepared=True)  # it reads no table: its plan is kept
    existing = (
        sa.select(*(MESSAGES.c[column] for column in _FOR_STATUS))
        .where(*_has_key(values, "postgresql"))
        .with_for_update()
        .lateral("existing")
    )
    return PreparedStatement(returned.add_columns(*existing.c).select_from(raw.outerjoin(existing, sa.true())))


# A status report's columns, all given by the caller (message_store binds every one).
_STATUS_COLUMNS = [column.key for column in STATUS_EVENTS.c if column.key != "id"]


def _status_with_message_update() -> PreparedStatement:
    """PostgreSQL: a status report's row and, when the report is new and advances its message (`applied`),
    the message's current status, in one statement: a round trip less for every report, which cost
    psycopg and the server as much as the rest of the report. Returns the report's id, or None when it
    was recorded before (and then the message is left as it is). The report's values are
    `report_<column>`; the message takes its status and provider status, with `status_updated_at` and
    `updated_at`. (Named apart from the messages' columns: SQLAlchemy would set every column a
    parameter is named after.)"""
    report = {
        column: sa.bindparam(f"report_{column}", type_=STATUS_EVENTS.c[column].type) for column in _STATUS_COLUMNS
    }
    inserted = (
        postgresql.insert(STATUS_EVENTS)
        .values(report)
        .on_conflict_do_nothing(index_elements=["message_seq", "dedupe_key"])
        .returning(STATUS_EVENTS.c.id)
        .cte("inserted")
    )
    updated = (
        sa.update(MESSAGES)
        .where(MESSAGES.c.seq == report["message_seq"], report["applied"] == sa.true(), sa.exists(inserted.select()))
        .values(
            status=report["status"],
            provider_status=report["provider_status"],
            status_updated_at=sa.bindparam("status_updated_at", type_=MESSAGES.c.status_updated_at.type),
            updated_at=sa.bindparam("updated_at", type_=MESSAGES.c.updated_at.type),
        )
        .cte("updated")
    )
    # A data-modifying WITH runs whether or not the final SELECT reads it.
    return PreparedStatement(sa.select(inserted.c.id).add_cte(updated))


def _has_key(values: dict[str, Any], dialect: str) -> list[Any]:
    """The conditions that a message has the key (`tenant_id`, `provider`, `provider_message_id`) of
    `values` (parameters).

    On PostgreSQL the tenant is compared with `(SELECT :tenant_id)`, which the key's unique index uses as
    it uses the parameter, but whose value the planner does not see. Seen, a tenant that ANALYZE did not
    find among its most common values (one that began or grew since) is estimated at a single message;
    then `ix_messages_tenant_seq` costs the same as the key's index, and PostgreSQL read the tenant's every
    message to find one (30,000 per report in the test). Unseen, it is estimated as any tenant is, a
    hundredth of the messages (migration 0015), and the key's index wins."""
    compared = dict(values)
    if dialect == "postgresql":
        compared["tenant_id"] = sa.select(values["tenant_id"]).scalar_subquery()
    return [MESSAGES.c[column] == compared[column] for column in MESSAGE_KEY]


def _locked_by_key(dialect: str, *columns: Any) -> sa.Select:
    """The message of a key (`tenant_id`, `provider`, `provider_message_id`), locked until commit
    (PostgreSQL; SQLite's writer lock covers it)."""
    key = {column: sa.bindparam(column, type_=MESSAGES.c[column].type) for column in MESSAGE_KEY}
    return sa.select(*columns).where(*_has_key(key, dialect)).with_for_update()


class _DialectStatements:
    """The ON CONFLICT statements, which differ by dialect only in the insert construct."""

    def __init__(self, dialect: str):
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        # SQLite has no INSERT inside WITH.
        self.raw_request_with_message = _raw_request_with_message() if dialect == "postgresql" else None
        self.raw_request_with_placeholder = (
            _raw_request_with_message(reading_for_status=True) if dialect == "postgresql" else None
        )
        self.status_with_message_update = _status_with_message_update() if dialect == "postgresql" else None
        self.insert_message = PreparedStatement(
            insert(MESSAGES).on_conflict_do_nothing(index_elements=MESSAGE_KEY).returning(MESSAGES.c.seq)
        )
        self.insert_status = PreparedStatement(
            insert(STATUS_EVENTS)
            .on_conflict_do_nothing(index_elements=["message_seq", "dedupe_key"])
            .returning(STATUS_EVENTS.c.id)
        )
        # SQLite: with its seq claimed; a conflict inserts no row.
        self.insert_new_message = PreparedStatement(insert(MESSAGES).on_conflict_do_nothing(index_elements=MESSAGE_KEY))
        # SQLite: the reports of messages new in the transaction, put off to its end (`_new_message_reported`).
        self.insert_new_status = PreparedStatement(
            insert(STATUS_EVENTS).on_conflict_do_nothing(index_elements=["message_seq", "dedupe_key"])
        )
        # What recording a status report reads of its message, on the driver's cursor (prepared.py): a
        # report's every statement counts, and the full row through `execute` cost as much as its insert.
        self.locked_for_status = PreparedStatement(
            _locked_by_key(dialect, *(MESSAGES.c[column] for column in _FOR_STATUS))
        )
        self.locked_message = _locked_by_key(dialect, MESSAGES)


_STATEMENTS = {name: _DialectStatements(name) for name in ("postgresql", "sqlite")}
RAW_ID, MESSAGE_SEQ = RAW_REQUESTS.c.id, MESSAGES.c.seq
# Inserts put off to the end of a batch, in this order, before the others' (engine.py, insert_at_commit).
_RAW_REQUESTS_FIRST, _MESSAGES_NEXT = -2, -1
# SQLite: the seqs of the messages whose reports the transaction put off (`_new_message_reported`).
_REPORTS_PUT_OFF = "webhook_service_reports_put_off"


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


def store_webhook(
    db: Database,
    connection: Connection,
    raw: RawRequestRecord,
    events: list[Event],
    region: str,
    log_entry: dict[str, Any] | None = None,
) -> StoreResult:
    """Store the request and its events. `log_entry` is its request log row (intake/request_log.py),
    written in the same transaction with what the request produced."""
    recorder = _Recorder(db, connection, raw.received_at, region)
    prepared = [recorder.prepare(event) for event in events]
    log_ahead: _LogAhead | None = None
    if log_entry is not None:
        log_entry = dict(
            log_entry,
            provider_message_ids=list(dict.fromkeys(event.provider_message_id for event in events)),
            addresses=sorted(recorder.addresses),
        )
        log_ahead = _LogAhead.of(db, log_entry, prepared)
    raw_row = {
        "request_id": raw.request_id,
        "received_at": raw.received_at,
        "provider": connection.provider,
        "connection": connection.name,
        "tenant_id": connection.tenant,
        "method": raw.method,
        "url": raw.url,
        "headers": raw.headers,
        "body": raw.body,
        "remote_addr": raw.remote_addr,
    }

    whole = recorder.encode_whole(raw_row, log_ahead, prepared)
    reports = None if whole else recorder.encode_reports(raw_row, log_entry, prepared)
    raw_insert: tuple[BoundRow, bool] | None = (
        None if whole or reports else recorder.bind_raw_request(raw_row, prepared)
    )

    def record(conn: sa.Connection) -> StoreResult:
        nonlocal raw_insert
        recorder.start()  # the group commit may run this twice (engine.py)
        if whole and inserts_checked_at_commit(conn):
            assert log_ahead is not None  # encoded whole only with its request log row
            entry = log_ahead.entry
            return recorder.put_off_whole(conn, whole, prepared, lambda: _latency_ms(entry, raw))
        if reports and inserts_checked_at_commit(conn):
            assert log_entry is not None  # encoded only with its request log row
            logged = log_entry
            return recorder.put_off_reports(conn, reports, lambda: _latency_ms(logged, raw))
        if raw_insert is None:  # encoded whole, but the batch runs each webhook on its own
            raw_insert = recorder.bind_raw_request(raw_row, prepared)
        raw_id, recorded = recorder.record_raw_request(conn, raw_insert, prepared)
        for item in prepared[recorded:]:
            recorder.record(conn, item, raw_id)
        # A request with no events (a provider event type we do not map) is still kept whole.
        if events and not recorder.changed:
            duplicate = StoreResult(duplicate=True, message_ids=recorder.message_ids)
            if log_entry is None:
                raise DiscardUnit(duplicate)
            # Nothing refers to the raw request of a request that changed nothing: it goes, and the log
            # row keeps the duplicate's headers instead (a genuine provider's: bounded by the web worker).
            DELETE_RAW_REQUEST.run(conn, {"raw_id": raw_id})
            headers = [[name, _REDACTED if looks_secret(name) else value] for name, value in raw.headers]
            _log(conn, log_entry, raw, outcome="duplicate", headers=headers, message_ids=recorder.message_ids)
            return duplicate
        if log_ahead is not None and log_ahead.message_ids == recorder.message_ids:
            insert_at_commit(conn, "request_log", [log_ahead.given(raw_id, raw)], INSERT_LOG_ENTRY.run_many)
        elif log_entry is not None:
            # The raw request keeps the headers.
            _log(conn, log_entry, raw, raw_request_id=raw_id, message_ids=recorder.message_ids)
        feed.append(conn, recorder.feed_rows)
        return StoreResult(
            duplicate=False,
            raw_request_id=raw_id,
            message_ids=recorder.message_ids,
            new_attachment_ids=recorder.new_attachment_ids,
        )

    # Committed together with whatever other webhooks this process is storing at the same moment.
    result: StoreResult = db.group_commit.run(record)
    if log_entry is not None:
        request_counts(db).add(log_entry, outcome="duplicate" if result.duplicate else "accepted")
    return result


def _log(conn: sa.Connection, log_entry: dict[str, Any], raw: RawRequestRecord, **produced: Any) -> None:
    row = dict(log_entry, **produced)
    row["latency_ms"] = _latency_ms(row, raw)
    insert_at_commit(conn, "request_log", [row], INSERT_LOG_ENTRY.run_many)


def _latency_ms(log_entry: dict[str, Any], raw: RawRequestRecord) -> float | None:
    if log_entry["replay_of"] is not None:  # a replay's received_at is its first arrival
        return log_entry["latency_ms"]
    return round((datetime.now(UTC) - raw.received_at).total_seconds() * 1000, 2)


@dataclass(frozen=True)
class _LogAhead:
    """The request log row of a webhook whose messages all turn out new, bound ahead: what it produced
    (`message_ids`) is then known before the transaction."""

    message_ids: list[str]
    entry: dict[str, Any]
    bound: BoundRow | None  # on SQLite (see _Recorder.prepare)

    @staticmethod
    def of(db: Database, log_entry: dict[str, Any], prepared: list[SimpleNamespace]) -> _LogAhead | None:
        if not prepared or not all(_is_message(item) for item in prepared):
            return None
        message_ids = [item.row["id"] for item in prepared]
        values = {key: value for key, value in log_entry.items() if key not in _LOG_LATE}
        values["message_ids"] = message_ids
        bound = INSERT_LOG_ENTRY.bind(db.engine.dialect, values, late=_LOG_LATE) if db.dialect == "sqlite" else None
        return _LogAhead(message_ids, log_entry, bound)

    def given(self, raw_id: int, raw: RawRequestRecord) -> BoundRow | dict[str, Any]:
        latency_ms = _latency_ms(self.entry, raw)
        if self.bound is None:
            return dict(self.entry, message_ids=self.message_ids, raw_request_id=raw_id, latency_ms=latency_ms)
        return self.bound.given(raw_request_id=raw_id, latency_ms=latency_ms)


# A request log row's values known only in its transaction.
_LOG_LATE = ("raw_request_id", "latency_ms")


def _value(row: tuple | None) -> Any:
    """The one value a RETURNING statement returned, None when it returned no row (a conflict)."""
    return None if row is None else row[0]


def raw_request_stored(db: Database, provider: str, connection: str, raw: RawRequestRecord) -> bool:
    """Whether this very request (same arrival time and request id) is stored already: its transaction
    committed although its caller was told it failed (the server went away before answering the COMMIT),
    or a spool drainer stored it and crashed before noting so. The raw request is written in the same
    transaction as everything else the request changes, so it being there means all of it is. (A request
    that only repeats what is stored leaves no raw row, and storing it again changes nothing either.)
    By the connection's provider and name: its request may be found stored after the connection was
    removed from the configuration."""
    key = {"received_at": raw.received_at, "request_id": raw.request_id}
    with db.reading() as session:
        found = session.execute(
            SELECT_STORED_RAW_REQUEST, {**key, "provider": provider, "connection": connection}
        ).first()
    return found is not None


@dataclass(frozen=True)
class _EncodedReports:
    """A webhook of status reports encoded whole (`_Recorder.encode_reports`)."""

    document: bytes
    keys: list[tuple[str, str, str]]  # its reports' messages' keys


@dataclass(frozen=True)
class _Placeholder:
    """What inserting a status report's placeholder message returned: its seq, None when the message was
    there already; and that message as read and locked with it, when it was (None: to be read)."""

    seq: int | None
    existing: tuple | None = None  # its `_FOR_STATUS` values


class _Recorder:
    def __init__(self, db: Database, connection: Connection, now: datetime, region: str):
        self.statements = _STATEMENTS[db.dialect]
        self.dialect = db.engine.dialect
        self.claims_ids = db.dialect == "sqlite"  # see the module's docstring
        self.connection = connection
        self.now = now
        self.region = region
        self.addresses: set[str] = set()  # for the request log
        self.start()

    def start(self) -> None:
        """Forget what a previous run of the transaction produced (it was rolled back)."""
        self.changed = False
        self.feed_rows: list[dict | BoundRow] = []
        self.message_ids: list[str] = []
        self.new_attachment_ids: list[str] = []

    # Before the transaction ---------------------------------------------------------------------
    def prepare(self, event: Event) -> SimpleNamespace:
        if isinstance(event, MessageEvent):
            content = {
                "direction": event.direction,
                "from_number": storable(normalize_address(event.from_, self.region)),
                "to_numbers": storable(self._addresses(event.to)),
                "text": storable(event.text),
                "subject": storable(event.subject),
                "occurred_at": event.occurred_at,
                "extra": storable(dict(event.extra)),
                "has_content": True,
            }
            self._note_addresses(content["from_number"], content["to_numbers"])
            if len(event.media) > MAX_ATTACHMENTS_PER_MESSAGE:
                content["extra"]["mediaNotFetched"] = len(event.media) - MAX_ATTACHMENTS_PER_MESSAGE
            attachments = [
                {
                    "id": new_id(),
                    "tenant_id": self.connection.tenant,
                    "index": index,
                    "source_url": storable(media.url),
                    "name": storable(media.name and media.name[:255]),
                    "declared_content_type": storable(media.content_type and media.content_type[:255]),
                    "declared_size": media.size
                    if media.size is not None and 0 <= media.size < MAX_DECLARED_SIZE
                    else None,
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_at": self.now,
                    "created_at": self.now,
                    "updated_at": self.now,
                }
                for index, media in enumerate(event.media[:MAX_ATTACHMENTS_PER_MESSAGE])
            ]
            item = SimpleNamespace(event=event, content=content, attachments=attachments)
            # As it is stored if it is new (the common case); on SQLite bound ahead (see the module's
            # docstring). On PostgreSQL such a webhook is most often encoded whole instead (encode_whole),
            # and binding it too would be work for nothing.
            item.row = self._message_row(item)
            item.insert = (
                self.statements.insert_new_message.bind(self.dialect, item.row, late=("raw_request_id", "seq"))
                if self.claims_ids
                else item.row
            )
            item.feed_row = (
                self._feed_row(feed.MESSAGE_RECEIVED, item.row["id"], _snapshot(item.row, attachments, []))
                if event.direction == "inbound"
                else None
            )
            item.feed_event = (
                feed.bound_event(self.dialect, item.feed_row)
                if self.claims_ids and item.feed_row is not None
                else item.feed_row
            )
            return item
        item = SimpleNamespace(
            event=event,
            dedupe_key=storable((event.event_id or _derived_dedupe_key(event))[:128]),
            from_number=storable(normalize_address(event.from_, self.region)),
            to_numbers=storable(self._addresses(event.to)),
            provider_status=storable((event.provider_status or "")[:64]),
            error_code=storable(event.error_code[:64]) if event.error_code else None,
            error_message=storable(event.error_message),
        )
        item.placeholder = self._placeholder_row(event.provider_message_id, item.from_number, item.to_numbers)
        self._note_addresses(item.from_number, item.to_numbers)
        if self.claims_ids:
            # SQLite: what the report stores if its message is new (the common first report), bound ahead
            # (see the module's docstring): the message carrying the report's status, the report, its event.
            new_message = self._placeholder_reporting(item)
            item.new_message = self.statements.insert_new_message.bind(
                self.dialect, new_message, late=("raw_request_id", "seq")
            )
            item.new_report = self.statements.insert_new_status.bind(
                self.dialect, dict(self._report_values(item), applied=True), late=("message_seq", "raw_request_id")
            )
            data = self._status_event_data(item, new_message["id"], applied=True, current=event.status)
            item.new_report_event = feed.bound_event(
                self.dialect, self._feed_row(feed.MESSAGE_STATUS, new_message["id"], data)
            )
        return item

    def _placeholder_reporting(self, item: SimpleNamespace) -> dict[str, Any]:
        """The row of a status report's message if it is new: its placeholder with the report's status, which
        a message known from no report yet takes (`advances` from no status is always true)."""
        event: StatusEvent = item.event
        return dict(
            item.placeholder,
            status=event.status,
            provider_status=item.provider_status,
            status_updated_at=event.occurred_at or self.now,
        )

    def _status_event_data(self, item: SimpleNamespace, message_id: str, *, applied: bool, current: str | None) -> dict:
        """A report's feed event's data."""
        return {"messageId": message_id, **self._status_data(item), "applied": applied, "currentStatus": current}

    def _placeholder_row(self, provider_message_id: str, from_number: str | None, to_numbers: list[str]) -> dict:
        """The row of a message known only from a status report (inserted unless it is there already),
        but for its raw_request_id."""
        return {
            **self._key(provider_message_id),
            "id": new_id(),
            "direction": "outbound",
            "from_number": from_number,
            "to_numbers": to_numbers,
            "has_content": False,
            "extra": {},
            "received_at": self.now,
            "updated_at": self.now,
            "text": None,
            "subject": None,
            "occurred_at": None,
            "status": None,
            "provider_status": None,
            "status_updated_at": None,
        }

    def _addresses(self, values) -> list[str]:
        return [address for address in (normalize_address(v, self.region) for v in values) if address]

    def _note_addresses(self, sender: str | None, recipients: list[str]) -> None:
        self.addresses.update(recipients)
        if sender:
            self.addresses.add(sender)

    def encode_whole(
        self, raw_row: dict[str, Any], log_ahead: _LogAhead | None, prepared: list[SimpleNamespace]
    ) -> bytes | None:
        """PostgreSQL: a webhook whose messages are all new as it comes (`_LogAhead`: every event a
        message, and a request log row), encoded whole to go in with its batch's others in one statement
        (intake/postgres_batch.py)."""
        if self.claims_ids or log_ahead is None:
            return None
        try:
            return NewMessagesWebhook.encode(
                raw_row,
                [item.row for item in prepared],
                [dict(attachment, message_id=item.row["id"]) for item in prepared for attachment in item.attachments],
                dict(log_ahead.entry, message_ids=log_ahead.message_ids),
                [item.feed_row for item in prepared if item.feed_row is not None],
            )
        except (TypeError, ValueError):  # a value JSON has no form for: the ordinary path, as before
            return None

    def encode_reports(
        self, raw_row: dict[str, Any], log_entry: dict[str, Any] | None, prepared: list[SimpleNamespace]
    ) -> _EncodedReports | None:
        """PostgreSQL: a webhook whose events are all status reports, each of a different message, encoded
        whole to go in with its batch's others in one statement (intake/postgres_reports.py)."""
        if self.claims_ids or log_entry is None or not prepared or any(_is_message(item) for item in prepared):
            return None
        keys = [(self.connection.tenant, self.connection.provider, item.event.provider_message_id) for item in prepared]
        if len(set(keys)) != len(keys):  # the second's rule reads what the first leaves: the ordinary path
            return None
        try:
            document = StatusReportsWebhook.encode(
                raw_row, [self._report_document(item) for item in prepared], log_entry
            )
        except (TypeError, ValueError):  # a value JSON has no form for: the ordinary path, as before
            return None
        return _EncodedReports(document, keys)

    def _report_document(self, item: SimpleNamespace) -> dict[str, Any]:
        """A report as postgres_reports.py takes it."""
        event: StatusEvent = item.event
        return {
            "placeholder": self._placeholder_reporting(item),
            "report": self._report_values(item),
            "advances_from": statuses.advances_from(event.status),
            "event": self._feed_row(feed.MESSAGE_STATUS, None, self._status_data(item)),
        }

    # Inside the transaction ---------------------------------------------------------------------
    def put_off_reports(
        self, conn: sa.Connection, encoded: _EncodedReports, latency_ms: Callable[[], float | None]
    ) -> StoreResult:
        """The webhook of reports encoded whole, put off to its batch's end; what it will have stored if
        every report is new (if not, the batch runs again: intake/postgres_reports.py)."""
        result = StoreResult(duplicate=False)

        def stored(raw_id: int, message_ids: list[str]) -> None:
            result.raw_request_id, result.message_ids = raw_id, message_ids

        webhook = StatusReportsWebhook(encoded.document, encoded.keys, latency_ms, stored)
        insert_at_commit(conn, "status_report_webhooks", [webhook], insert_reports, order=ORDER_LAST, standalone=True)
        return result

    def put_off_whole(
        self,
        conn: sa.Connection,
        document: bytes,
        prepared: list[SimpleNamespace],
        latency_ms: Callable[[], float | None],
    ) -> StoreResult:
        """The webhook encoded whole, put off to its batch's end; what it will have stored if every message
        is new (if not, the batch runs again: intake/postgres_batch.py)."""
        result = StoreResult(
            duplicate=False,
            message_ids=[item.row["id"] for item in prepared],
            new_attachment_ids=[attachment["id"] for item in prepared for attachment in item.attachments],
        )

        def stored(raw_id: int) -> None:
            result.raw_request_id = raw_id

        webhook = NewMessagesWebhook(document, len(prepared), len(result.new_attachment_ids), latency_ms, stored)
        insert_at_commit(conn, "new_message_webhooks", [webhook], insert_webhooks, order=ORDER_LAST, standalone=True)
        return result

    def bind_raw_request(self, raw_row: dict[str, Any], prepared: list[SimpleNamespace]) -> tuple[BoundRow, bool]:
        """The raw request's insert, bound ahead, and whether it inserts the first event's message too (on
        PostgreSQL the first event's message, or a status report's placeholder for a message not known
        yet, goes in the same statement, a round trip less; see _raw_request_with_message)."""
        if self.claims_ids:
            return INSERT_RAW_REQUEST_ROW.bind(self.dialect, raw_row, late=("id",)), False
        if self.statements.raw_request_with_message is None or not prepared:
            return INSERT_RAW_REQUEST.bind(self.dialect, raw_row), False
        first = prepared[0]
        statement = (
            self.statements.raw_request_with_message
            if _is_message(first)
            else self.statements.raw_request_with_placeholder
        )
        row = first.row if _is_message(first) else first.placeholder
        assert statement is not None  # both are PostgreSQL's
        values = dict(raw_row, **{f"message_{column}": row[column] for column in MESSAGE_COLUMNS})
        return statement.bind(self.dialect, values), True

    def record_raw_request(
        self, conn: sa.Connection, raw_insert: tuple[BoundRow, bool], prepared: list[SimpleNamespace]
    ) -> tuple[int, int]:
        """Store the raw request: its id, and how many of the events it recorded with it."""
        bound, with_message = raw_insert
        if self.claims_ids:
            return self._record_raw_request_claimed(conn, bound, prepared)
        if not with_message:
            raw_id = _value(INSERT_RAW_REQUEST.run(conn, bound))
            assert raw_id is not None  # an insert without a conflict clause returns its row
            return raw_id, 0
        returned = self.statements.raw_request_with_message.run(conn, bound)  # type: ignore[union-attr]
        assert returned is not None  # the final SELECT reads the raw request's one row
        raw_id, seq, *existing = returned
        if _is_message(prepared[0]):
            self._message_inserted(conn, prepared[0], raw_id, seq)
        else:
            there = tuple(existing) if existing[0] is not None else None
            self._record_status(conn, prepared[0], raw_id, _Placeholder(seq, there))
        return raw_id, 1

    def _record_raw_request_claimed(
        self, conn: sa.Connection, bound: BoundRow, prepared: list[SimpleNamespace]
    ) -> tuple[int, int]:
        """SQLite: the raw request under a claimed id; in a batch's first run, a webhook of messages
        has its inserts put off to the batch's end, each message assumed new (a conflict there sends the
        batch to its second run: see `_insert_new_messages`)."""
        raw_id = claim_ids(conn, {RAW_ID: 1, MESSAGE_SEQ: 0})[RAW_ID][0]
        row = bound.given(id=raw_id)
        if not (prepared and inserts_checked_at_commit(conn) and all(_is_message(item) for item in prepared)):
            INSERT_RAW_REQUEST_ROW.run(conn, row)
            return raw_id, 0
        insert_at_commit(conn, "raw_requests", [row], INSERT_RAW_REQUEST_ROW.run_many, order=_RAW_REQUESTS_FIRST)
        seqs = claim_ids(conn, {MESSAGE_SEQ: len(prepared)})[MESSAGE_SEQ]
        for item, seq in zip(prepared, seqs, strict=True):
            message = item.insert.given(raw_request_id=raw_id, seq=seq)
            insert_at_commit(conn, "messages", [message], self._insert_new_messages, order=_MESSAGES_NEXT)
            self._message_inserted(conn, item, raw_id, seq)
        return raw_id, len(prepared)

    def _insert_new_messages(self, conn: sa.Connection, rows: list[BoundRow]) -> None:
        inserted = self.statements.insert_new_message.run_many(conn, rows)
        if inserted != len(rows):
            raise InsertConflict(f"{len(rows) - inserted} of {len(rows)} messages were there already")

    def record(self, conn: sa.Connection, item: SimpleNamespace, raw_id: int) -> None:
        if _is_message(item):
            seq = self._insert_message_if_new(conn, item.insert, raw_request_id=raw_id)
            self._message_inserted(conn, item, raw_id, seq)
        else:
            self._record_status(conn, item, raw_id, None)

    def _insert_message_if_new(self, conn: sa.Connection, row: dict[str, Any] | BoundRow, **late: Any) -> int | None:
        """Insert the message (a row bound ahead, given its `late` values, or a dict with them), unless
        it is there already: its seq, or None. On SQLite under a claimed seq."""
        if not self.claims_ids:
            given = row.given(**late) if isinstance(row, BoundRow) else dict(row, **late)
            return _value(self.statements.insert_message.run(conn, given))
        seq = claim_ids(conn, {MESSAGE_SEQ: 1})[MESSAGE_SEQ][0]
        given = row.given(seq=seq, **late) if isinstance(row, BoundRow) else dict(row, seq=seq, **late)
        return seq if self.statements.insert_new_message.run_many(conn, [given]) else None

    def _message_row(self, item: SimpleNamespace) -> dict[str, Any]:
        """The message's row, but for its raw_request_id."""
        event: MessageEvent = item.event
        inbound = event.direction == "inbound"
        return {
            **self._key(event.provider_message_id),
            "id": new_id(),
            "received_at": self.now,
            "updated_at": self.now,
            "status": None,
            "provider_status": None,
            "status_updated_at": None,
            **item.content,
            **(self._received_status(event) if inbound else {}),
        }

    def _received_status(self, event: MessageEvent) -> dict[str, Any]:
        return {"status": statuses.RECEIVED, "status_updated_at": event.occurred_at or self.now}

    def _message_inserted(self, conn: sa.Connection, item: SimpleNamespace, raw_id: int, seq: int | None) -> None:
        """The rest of recording a message whose insert returned `seq` (None: it was there already)."""
        event: MessageEvent = item.event
        inbound = event.direction == "inbound"
        if seq is not None:  # new, as bound ahead
            self._saw(item.row["id"])
            self._attachments_inserted(conn, item.attachments, seq)
            self.changed = True
            if item.feed_event is not None:
                self.feed_rows.append(item.feed_event)
            return
        # What deciding needs, on the driver's cursor: most such webhooks are a provider's retries.
        existing = self._read_for_status(conn, event.provider_message_id)
        if existing.has_content:
            self._saw(existing.id)  # the message it repeats, for the log
            return  # a retry or a second notification of a message we already have
        # Known so far only from status reports: fill in the content, keep its id and status.
        update = dict(item.content, raw_request_id=raw_id, updated_at=self.now)
        if inbound and existing.status is None:
            update.update(self._received_status(event))
        UPDATE_MESSAGE.run(conn, dict(update, message_seq=existing.seq))
        self._saw(existing.id)
        self._attachments_inserted(conn, item.attachments, existing.seq)
        self.changed = True
        if inbound:
            if existing.seq in transaction_notes(conn, _REPORTS_PUT_OFF):
                # The history below would miss a report this batch put off: run it again, nothing put off.
                raise InsertConflict("a message filled in after its report in the same batch")
            stored = self._locked(conn, event.provider_message_id)._asdict()
            history = list(conn.execute(SELECT_HISTORY, {"seq": existing.seq}))
            snapshot = _snapshot({**stored, **update}, item.attachments, history)
            self.feed_rows.append(self._feed_row(feed.MESSAGE_RECEIVED, existing.id, snapshot))

    def _attachments_inserted(self, conn: sa.Connection, attachments: list[dict[str, Any]], seq: int) -> None:
        if attachments:
            rows = [dict(a, message_seq=seq) for a in attachments]
            insert_at_commit(conn, "attachments", rows, INSERT_ATTACHMENTS.run_many)
            self.new_attachment_ids.extend(a["id"] for a in attachments)

    def _record_status(
        self, conn: sa.Connection, item: SimpleNamespace, raw_id: int, placeholder: _Placeholder | None
    ) -> None:
        """Record a status report; `placeholder`: its message's placeholder insert ran already (with the raw
        request), None to run it here."""
        event: StatusEvent = item.event
        if placeholder is None and self.claims_ids:
            seq = self._insert_message_if_new(conn, item.new_message, raw_request_id=raw_id)
            if seq is not None:
                self._new_message_reported(conn, item, seq, raw_id)
                return
            placeholder = _Placeholder(None)
        if placeholder is None:
            placeholder = _Placeholder(self._insert_message_if_new(conn, item.placeholder, raw_request_id=raw_id))
        if placeholder.seq is not None:
            # The message is the placeholder just inserted (and locked by that insert): its row is known.
            row = item.placeholder
            message: Any = SimpleNamespace(
                seq=placeholder.seq, id=row["id"], status=None, has_content=False, from_number=row["from_number"]
            )
        else:
            message = (
                SimpleNamespace(**dict(zip(_FOR_STATUS, placeholder.existing, strict=True)))
                if placeholder.existing
                else self._read_for_status(conn, event.provider_message_id)
            )
        self._saw(message.id)
        if not message.has_content and message.from_number is None and item.from_number:
            # The report is all we know of this message so far: keep its addresses.
            addresses = {"from_number": item.from_number, "to_numbers": item.to_numbers, "updated_at": self.now}
            UPDATE_MESSAGE.run(conn, dict(addresses, message_seq=message.seq))
        applied = statuses.advances(message.status, event.status)
        report = dict(self._report_values(item), message_seq=message.seq, applied=applied, raw_request_id=raw_id)
        status_updated_at = event.occurred_at or self.now
        together = self.statements.status_with_message_update
        if together is not None:
            given = {f"report_{column}": value for column, value in report.items()}
            inserted = _value(together.run(conn, dict(given, status_updated_at=status_updated_at, updated_at=self.now)))
        else:
            inserted = _value(self.statements.insert_status.run(conn, report))
            if inserted is not None and applied:
                UPDATE_MESSAGE.run(
                    conn,
                    {
                        "message_seq": message.seq,
                        "status": event.status,
                        "provider_status": item.provider_status,
                        "status_updated_at": status_updated_at,
                        "updated_at": self.now,
                    },
                )
        if inserted is None:
            return  # this very report was recorded before
        current = event.status if applied else message.status
        self.changed = True
        data = self._status_event_data(item, message.id, applied=applied, current=current)
        self.feed_rows.append(self._feed_row(feed.MESSAGE_STATUS, message.id, data))

    def _new_message_reported(self, conn: sa.Connection, item: SimpleNamespace, seq: int, raw_id: int) -> None:
        """SQLite: the rest of a report whose message its insert found new (carrying the report's status, so
        nothing to update). Such a report cannot have been recorded before; in a batch's first run it goes
        in with the batch's others at the end (another webhook of the batch may give the same report: then
        the batch runs again, `_insert_new_reports`)."""
        report = item.new_report.given(message_seq=seq, raw_request_id=raw_id)
        if inserts_checked_at_commit(conn):
            insert_at_commit(conn, "status_reports", [report], self._insert_new_reports)
            transaction_notes(conn, _REPORTS_PUT_OFF).add(seq)
        else:
            self.statements.insert_new_status.run(conn, report)
        self._saw(item.placeholder["id"])
        self.changed = True
        self.feed_rows.append(item.new_report_event)

    def _insert_new_reports(self, conn: sa.Connection, rows: list[BoundRow]) -> None:
        inserted = self.statements.insert_new_status.run_many(conn, rows)
        if inserted != len(rows):
            raise InsertConflict(f"{len(rows) - inserted} of {len(rows)} reports were there already")

    def _report_values(self, item: SimpleNamespace) -> dict[str, Any]:
        """A report's row, but for its message's seq, whether it applied and its raw request's id."""
        event: StatusEvent = item.event
        return {
            "dedupe_key": item.dedupe_key,
            "status": event.status,
            "provider_status": item.provider_status,
            "error_code": item.error_code,
            "error_message": item.error_message,
            "occurred_at": event.occurred_at,
            "received_at": self.now,
        }

    def _status_data(self, item: SimpleNamespace) -> dict[str, Any]:
        """A report's feed event's data, but for its message's id, whether it applied and the message's
        current status."""
        event: StatusEvent = item.event
        return {
            "provider": self.connection.provider,
            "providerMessageId": event.provider_message_id,
            "status": event.status,
            "providerStatus": item.provider_status,
            "errorCode": item.error_code,
            "errorMessage": item.error_message,
            "occurredAt": iso(event.occurred_at),
        }

    # Shared -----------------------------------------------------------------------------------
    def _key(self, provider_message_id: str) -> dict:
        return {
            "tenant_id": self.connection.tenant,
            "provider": self.connection.provider,
            "connection": self.connection.name,
            "provider_message_id": provider_message_id,
        }

    def _read_for_status(self, conn: sa.Connection, provider_message_id: str) -> SimpleNamespace:
        """The `_FOR_STATUS` columns of a message there already (an insert found it), locked until commit."""
        found = self.statements.locked_for_status.run(conn, self._key_values(provider_message_id))
        assert found is not None  # an insert found it there, and messages are never deleted
        return SimpleNamespace(**dict(zip(_FOR_STATUS, found, strict=True)))

    def _locked(self, conn: sa.Connection, provider_message_id: str) -> sa.Row:
        """The existing message row, locked until commit (PostgreSQL; SQLite's writer lock covers it)."""
        return conn.execute(self.statements.locked_message, self._key_values(provider_message_id)).one()

    def _key_values(self, provider_message_id: str) -> dict[str, str]:
        return {
            "tenant_id": self.connection.tenant,
            "provider": self.connection.provider,
            "provider_message_id": provider_message_id,
        }

    def _saw(self, message_id: str) -> None:
        if message_id not in self.message_ids:
            self.message_ids.append(message_id)

    def _feed_row(self, event_type: str, message_id: str | None, data: dict) -> dict:
        return {
            "tenant_id": self.connection.tenant,
            "type": event_type,
            "message_id": message_id,
            "attachment_id": None,
            "created_at": self.now,
            "data": data,
        }


def _snapshot(row: dict[str, Any], attachments: list[dict[str, Any]], history: list[Any]) -> dict[str, Any]:
    """A received message as its feed event shows it: as stored, its attachments still to be fetched."""
    return message_json(
        SimpleNamespace(**row),
        [
            SimpleNamespace(**a, content_type=None, size=None, sha256=None, reason_code=None, reason=None)
            for a in attachments
        ],
        history,
    )


def _is_message(item: SimpleNamespace) -> bool:
    return isinstance(item.event, MessageEvent)


def _derived_dedupe_key(event: StatusEvent) -> str:
    """Retries of one report are identical; different reports differ in status, error or time."""
    occurred = event.occurred_at.isoformat() if event.occurred_at else ""
    basis = f"{event.provider_status}|{event.error_code or ''}|{occurred}"
    # caller_bytes, not str.encode(): a JSON body can carry a lone surrogate ("\ud800"), which strict UTF-8
    # refuses to encode, and the report would be neither stored nor quarantined. Distinct reports keep
    # distinct keys, and any text that encoded before keeps its key.
    return "d:" + hashlib.sha256(caller_bytes(basis)).hexdigest()[:40]
