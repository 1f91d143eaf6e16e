"""PostgreSQL: a batch's webhooks of new messages stored by one statement.

psycopg spends some 65 µs of CPU on each statement and more on each parameter it converts (a JSON value
goes through `json.dumps` on its own): a webhook of one new message cost the group commit's leader four
statements' worth (its raw request with its message, a share of the request log's and the feed's
executemany, of the feed's lock and the commit) and two dozen parameters, 0.4 ms a webhook, which made
the intake slower on PostgreSQL than a receiver that inserts one row per request.

So in a group commit's first run (`inserts_checked_at_commit`), a webhook whose events are all messages
hands over its rows already encoded as one JSON document (in its own thread, before its batch), and at
the batch's end every such webhook's rows go in with one statement: the documents as one parameter,
unpacked by `jsonb_to_record(set)` and inserted by data-modifying WITH queries, in this order of
dependence:

- each webhook's raw request, under an id taken from its sequence first (`nextval`), which its messages
  and its request log row refer to;
- its messages, their attachments joined to the messages' new seq (a batch with no attachments, most
  of them, runs the statement without that insert, `_statement`);
- its request log row;
- its feed events, after the feed's bound lock (`database/feed.py`), taken before their ids are.

Every message is assumed new, and the messages' insert has no conflict clause: a message that is there
already (a provider's retry of a message we have, or two copies of one in the batch) fails the whole
statement with a unique violation, which changes nothing, and `InsertConflict` sends the batch to run
again one webhook at a time, nothing put off, where `message_store` finds what each one repeats. So the
statement is atomic on its own, and when a batch holds nothing else it runs as a transaction of its own,
without BEGIN and COMMIT (`insert_at_commit(standalone=True)`): one round trip for the batch instead of
three, which at a web server's usual batch of two or three webhooks was a tenth of the intake's CPU. (The
price: each such retry is a failed statement in PostgreSQL's log, with the message's key.)

The column lists come from the tables, so a column added to them is added here too; the documents'
values are what the row dicts hold, in JSON: datetimes as ISO 8601, bytes in PostgreSQL's hex form, and a
Python None in a JSON column stored as JSON null, as SQLAlchemy stores it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa
from psycopg.types.json import Jsonb
from sqlalchemy.dialects import postgresql

from webhook_service.database import json_text
from webhook_service.database.engine import InsertConflict, note_transaction_lock
from webhook_service.database.feed import BOUND_LOCK_SQL, FEED_LOCK_KEY, bound_parameters
from webhook_service.database.prepared import PreparedStatement
from webhook_service.database.tables import ATTACHMENTS, EVENTS, MESSAGES, RAW_REQUESTS, REQUEST_LOG

_DIALECT = postgresql.psycopg.dialect()
_QUOTE = _DIALECT.identifier_preparer.quote

# The columns a webhook gives values to (the others are the tables' own ids, or come from the statement);
# message_store.py binds the same ones on its ordinary path.
RAW_COLUMNS = [column.key for column in RAW_REQUESTS.c if column.key != "id"]
MESSAGE_COLUMNS = [column.key for column in MESSAGES.c if column.key not in ("seq", "raw_request_id")]
ATTACHMENT_COLUMNS = [column.key for column in ATTACHMENTS.c if column.key not in ("seq", "message_seq")]
LOG_COLUMNS = [column.key for column in REQUEST_LOG.c if column.key not in ("id", "raw_request_id", "latency_ms")]
EVENT_COLUMNS = [column.key for column in EVENTS.c if column.key != "id"]


def select_values(table: sa.Table, alias: str, columns: list[str]) -> str:
    """The select list of `columns` from the record `alias`; a JSON column's null as JSON null."""
    listed = []
    for name in columns:
        value = f"{alias}.{_QUOTE(name)}"
        if isinstance(table.c[name].type.dialect_impl(_DIALECT), postgresql.JSONB):
            value = f"COALESCE({value},'null')"
        listed.append(value)
    return ",".join(listed)


def column_names(columns: Iterable[str]) -> str:
    return ",".join(_QUOTE(name) for name in columns)


# `jsonb_populate_record(set)` reads a document's values as the table's own column types. The raw
# requests' ids come from the sequence their column's default takes them from (`RAW_ID_SEQUENCE`, named
# the way the default names it, so resolved as the table's name is): a constant the plan keeps.
# `pg_get_serial_sequence` searched the catalog at every run: once per row it cost a tenth of
# PostgreSQL's CPU for the statement, and once per statement still about 0.02 ms of the 0.45 ms a
# statement of three webhooks costs the server. The feed's bound lock is read by the events' insert, so
# that it is taken before the first event's id is.
RAW_ID_SEQUENCE = "raw_requests_id_seq"
_ATTACHMENTS_CTE = f"""
attachment_inserted AS (
    INSERT INTO attachments ({column_names(ATTACHMENT_COLUMNS)},message_seq)
    SELECT {select_values(ATTACHMENTS, "a", ATTACHMENT_COLUMNS)},message_inserted.seq
    FROM webhook, jsonb_array_elements(webhook.document->'attachments') AS given(document),
        jsonb_populate_record(NULL::attachments, given.document) AS a, message_inserted
    WHERE message_inserted.id = given.document->>'message_id'
),"""


def _statement(*, attachments: bool) -> str:
    """The batch's statement; without `attachments`, for a batch that has none (most inbound messages): a
    data-modifying WITH runs even when it inserts nothing, and opening the attachments table and its six
    indexes cost PostgreSQL 0.016-0.024 ms a statement, of 0.22 for one webhook and 0.33 for three
    (bench/intake_statement.py)."""
    sql = f"""
WITH webhook AS MATERIALIZED (
    SELECT document, position, nextval(CAST('{RAW_ID_SEQUENCE}' AS regclass)) AS raw_id
    FROM jsonb_array_elements(CAST(:webhooks AS jsonb)) WITH ORDINALITY AS given(document, position)
),
raw_inserted AS (
    INSERT INTO raw_requests (id,{column_names(RAW_COLUMNS)})
    SELECT webhook.raw_id,{select_values(RAW_REQUESTS, "r", RAW_COLUMNS)}
    FROM webhook, jsonb_populate_record(NULL::raw_requests, webhook.document->'raw') AS r
),
message_inserted AS (
    INSERT INTO messages ({column_names(MESSAGE_COLUMNS)},raw_request_id)
    SELECT {select_values(MESSAGES, "m", MESSAGE_COLUMNS)},webhook.raw_id
    FROM webhook, jsonb_populate_recordset(NULL::messages, webhook.document->'messages') AS m
    ORDER BY webhook.position
    RETURNING seq, id
),{_ATTACHMENTS_CTE if attachments else ""}
log_inserted AS (
    INSERT INTO request_log ({column_names(LOG_COLUMNS)},raw_request_id,latency_ms)
    SELECT {select_values(REQUEST_LOG, "l", LOG_COLUMNS)},webhook.raw_id,
        CAST(CAST(:latencies AS jsonb)->>CAST(webhook.position - 1 AS integer) AS double precision)
    FROM webhook, jsonb_populate_record(NULL::request_log, webhook.document->'log') AS l
),
feed_lock AS ({BOUND_LOCK_SQL}),
event_inserted AS (
    INSERT INTO events ({column_names(EVENT_COLUMNS)})
    SELECT {select_values(EVENTS, "e", EVENT_COLUMNS)}
    FROM feed_lock, webhook, jsonb_populate_recordset(NULL::events, webhook.document->'events') AS e
    ORDER BY webhook.position
)
SELECT (SELECT count(*) FROM message_inserted), (SELECT array_agg(raw_id ORDER BY position) FROM webhook)
"""
    return compact(sql)


def compact(sql: str) -> str:
    """A statement without its layout, which PostgreSQL does not need: psycopg keeps its parsing of a
    statement up to 4096 characters long and parses a longer one at every run (11 µs of CPU for the
    status reports' 6,300 characters, against 1-2 µs for a kept one; timeit, 2026-12-07)."""
    return " ".join(sql.split())


def _prepared(*, attachments: bool) -> PreparedStatement:
    returned: dict[str, sa.types.TypeEngine[Any]] = {
        "inserted": sa.BigInteger(),
        "raw_ids": postgresql.ARRAY(sa.BigInteger),
    }
    # It reads no table (its inserts have no conflict clause): its plan is kept (prepared.py).
    return PreparedStatement(sa.text(_statement(attachments=attachments)).columns(**returned), kept_prepared=True)


INSERT_WEBHOOKS = _prepared(attachments=True)
INSERT_WEBHOOKS_WITHOUT_ATTACHMENTS = _prepared(attachments=False)


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    raise TypeError(f"{type(value).__name__} is not a column value")


def encode_document(value: Any) -> bytes:
    return json_text.dumps_utf8(value, default=_json_value)


def _already_encoded(document: bytes) -> bytes:
    return document


def json_parameter(document: bytes) -> Jsonb:
    """A document encoded ahead as a statement's parameter: psycopg sends its bytes as they are (as
    `jsonb`), where a `str` would be encoded to UTF-8 once more."""
    return Jsonb(document, dumps=_already_encoded)


@dataclass
class NewMessagesWebhook:
    """One webhook's rows, encoded ahead, to be inserted with its batch's others (`put_off`). `stored`
    is called with its raw request's id once they are."""

    document: bytes
    messages: int
    attachments: int
    latency_ms: Callable[[], float | None]  # called as the rows are written: the request log's latency
    stored: Callable[[int], None]

    @staticmethod
    def encode(
        raw: dict[str, Any],
        messages: list[dict[str, Any]],
        attachments: list[dict[str, Any]],
        log: dict[str, Any],
        events: list[dict[str, Any]],
    ) -> bytes:
        """The document of a webhook: `raw` its raw request's values, `messages` its messages', each
        `attachments`' row with the `message_id` it belongs to, `log` its request log row's (but for the
        raw request id and the latency), `events` its feed events'."""
        return encode_document(
            {
                "raw": {name: raw[name] for name in RAW_COLUMNS},
                "messages": [{name: row[name] for name in MESSAGE_COLUMNS} for row in messages],
                "attachments": attachments,
                "log": {name: log[name] for name in LOG_COLUMNS},
                "events": events,
            }
        )


class EncodedWebhook(Protocol):
    """A webhook encoded ahead for a batch's one statement (this module's, and postgres_reports.py's)."""

    @property
    def document(self) -> bytes: ...

    @property
    def latency_ms(self) -> Callable[[], float | None]: ...  # the request log's latency, as rows are written


def run_batch(
    connection: sa.Connection, statement: PreparedStatement, webhooks: Sequence[EncodedWebhook], conflict: str
) -> tuple:
    """Run a batch's one statement on its webhooks' documents, with the feed's bound lock it takes: the row it
    returns. A constraint a row breaks is an `InsertConflict` (`conflict` says which), which sends the
    batch to run again one webhook at a time, where the webhook's ordinary way records what it repeats or
    reports any other failure."""
    try:
        returned = statement.run(
            connection,
            {
                "webhooks": json_parameter(b"[" + b",".join(webhook.document for webhook in webhooks) + b"]"),
                # As JSON too: psycopg's conversion of a list to an array cost more than the rest.
                "latencies": json_parameter(encode_document([webhook.latency_ms() for webhook in webhooks])),
                **bound_parameters(connection),
            },
        )
    except sa.exc.IntegrityError as error:
        raise InsertConflict(conflict) from error
    note_transaction_lock(connection, FEED_LOCK_KEY)
    assert returned is not None  # a SELECT of subqueries returns one row
    return returned


def insert_webhooks(connection: sa.Connection, webhooks: list[NewMessagesWebhook]) -> None:
    """Insert the batch's webhooks of new messages (see the module's docstring)."""
    insert = (
        INSERT_WEBHOOKS if any(webhook.attachments for webhook in webhooks) else INSERT_WEBHOOKS_WITHOUT_ATTACHMENTS
    )
    inserted, raw_ids = run_batch(connection, insert, webhooks, "a message of the batch was there already")
    # Without a conflict clause every message is inserted, or the statement failed (the count is there to
    # keep it so: the statement may have committed already, a second run would store twice).
    assert inserted == sum(webhook.messages for webhook in webhooks)
    for webhook, raw_id in zip(webhooks, raw_ids, strict=True):
        webhook.stored(raw_id)
