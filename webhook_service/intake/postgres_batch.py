"""PostgreSQL: a batch's webhooks of new messages stored by one statement.

psycopg spends some 65 µs of CPU on each statement and more on each parameter it converts (a JSON value
goes through `json.dumps` on its own): a webhook of one new message cost the group commit's leader four
statements' worth (its raw request with its message, a share of the request log's and the feed's
executemany, of the feed lock and the commit) and two dozen parameters, 0.4 ms a webhook, which made
the intake slower on PostgreSQL than a receiver that inserts one row per request.

So in a group commit's first run (`inserts_checked_at_commit`), a webhook whose events are all messages
hands over its rows already encoded as one JSON document (in its own thread, before its batch), and at
the batch's end every such webhook's rows go in with one statement: the documents as one parameter,
unpacked by `jsonb_to_record(set)` and inserted by data-modifying WITH queries, in this order of
dependence:

- each webhook's raw request, under an id taken from its sequence first (`nextval`), which its messages
  and its request log row refer to;
- its messages (ON CONFLICT DO NOTHING on the message key, as elsewhere), their attachments joined to the
  messages' new seq;
- its request log row;
- its feed events, under the feed lock (`database/feed.py`), taken before their ids are.

Every message is assumed new: when the statement inserted fewer than it was given (a provider's retry
of a message we have, or two copies of one in the batch), it raises `InsertConflict` and the batch runs
again one webhook at a time, nothing put off, where `message_store` finds what each one repeats.

The column lists come from the tables, so a column added to them is added here too; the documents'
values are what the row dicts hold, in JSON: datetimes as ISO 8601, bytes in PostgreSQL's hex form, and a
Python None in a JSON column stored as JSON null, as SQLAlchemy stores it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from webhook_service.database.engine import InsertConflict, note_transaction_lock
from webhook_service.database.feed import FEED_LOCK_KEY
from webhook_service.database.prepared import PreparedStatement
from webhook_service.database.tables import ATTACHMENTS, EVENTS, MESSAGES, RAW_REQUESTS, REQUEST_LOG

_DIALECT = postgresql.psycopg.dialect()
_QUOTE = _DIALECT.identifier_preparer.quote

# The columns each document gives (the others are the tables' own ids, or come from the statement).
RAW_COLUMNS = [column.key for column in RAW_REQUESTS.c if column.key != "id"]
MESSAGE_COLUMNS = [column.key for column in MESSAGES.c if column.key not in ("seq", "raw_request_id")]
ATTACHMENT_COLUMNS = [column.key for column in ATTACHMENTS.c if column.key not in ("seq", "message_seq")]
LOG_COLUMNS = [column.key for column in REQUEST_LOG.c if column.key not in ("id", "raw_request_id", "latency_ms")]
EVENT_COLUMNS = [column.key for column in EVENTS.c if column.key != "id"]


def _record_type(table: sa.Table, columns: list[str], *extra: str) -> str:
    """`jsonb_to_record`'s column definitions for `columns` of `table`."""
    return ", ".join([*(f"{_QUOTE(name)} {table.c[name].type.compile(dialect=_DIALECT)}" for name in columns), *extra])


def _values(table: sa.Table, alias: str, columns: list[str]) -> str:
    """The select list of `columns` from the record `alias`; a JSON column's null as JSON null."""
    listed = []
    for name in columns:
        value = f"{alias}.{_QUOTE(name)}"
        if isinstance(table.c[name].type.dialect_impl(_DIALECT), postgresql.JSONB):
            value = f"COALESCE({value}, 'null'::jsonb)"
        listed.append(value)
    return ", ".join(listed)


def _names(columns: Iterable[str]) -> str:
    return ", ".join(_QUOTE(name) for name in columns)


_SQL = f"""
WITH webhook AS MATERIALIZED (
    SELECT document, position, nextval(pg_get_serial_sequence('raw_requests', 'id')) AS raw_id
    FROM jsonb_array_elements(CAST(:webhooks AS jsonb)) WITH ORDINALITY AS given(document, position)
),
raw_inserted AS (
    INSERT INTO raw_requests (id, {_names(RAW_COLUMNS)})
    SELECT webhook.raw_id, {_values(RAW_REQUESTS, "r", RAW_COLUMNS)}
    FROM webhook, jsonb_to_record(webhook.document -> 'raw') AS r({_record_type(RAW_REQUESTS, RAW_COLUMNS)})
),
message_inserted AS (
    INSERT INTO messages ({_names(MESSAGE_COLUMNS)}, raw_request_id)
    SELECT {_values(MESSAGES, "m", MESSAGE_COLUMNS)}, webhook.raw_id
    FROM webhook, jsonb_to_recordset(webhook.document -> 'messages') AS m({_record_type(MESSAGES, MESSAGE_COLUMNS)})
    ORDER BY webhook.position
    ON CONFLICT (tenant_id, provider, provider_message_id) DO NOTHING
    RETURNING seq, id
),
attachment_inserted AS (
    INSERT INTO attachments ({_names(ATTACHMENT_COLUMNS)}, message_seq)
    SELECT {_values(ATTACHMENTS, "a", ATTACHMENT_COLUMNS)}, message_inserted.seq
    FROM webhook,
        jsonb_to_recordset(webhook.document -> 'attachments')
            AS a({_record_type(ATTACHMENTS, ATTACHMENT_COLUMNS, "message_id VARCHAR(36)")})
        JOIN message_inserted ON message_inserted.id = a.message_id
),
log_inserted AS (
    INSERT INTO request_log ({_names(LOG_COLUMNS)}, raw_request_id, latency_ms)
    SELECT {_values(REQUEST_LOG, "l", LOG_COLUMNS)}, webhook.raw_id,
        (CAST(:latencies AS double precision[]))[webhook.position]
    FROM webhook, jsonb_to_record(webhook.document -> 'log') AS l({_record_type(REQUEST_LOG, LOG_COLUMNS)})
),
feed_lock AS (
    SELECT pg_advisory_xact_lock(:feed_lock) AS taken
),
event_inserted AS (
    -- Reading feed_lock makes the lock be taken before the first event's id is.
    INSERT INTO events ({_names(EVENT_COLUMNS)})
    SELECT {_values(EVENTS, "e", EVENT_COLUMNS)}
    FROM feed_lock, webhook, jsonb_to_recordset(webhook.document -> 'events') AS e({_record_type(EVENTS, EVENT_COLUMNS)})
    ORDER BY webhook.position
)
SELECT (SELECT count(*) FROM message_inserted), (SELECT array_agg(raw_id ORDER BY position) FROM webhook)
"""
INSERT_WEBHOOKS = PreparedStatement(
    sa.text(_SQL).columns(inserted=sa.BigInteger, raw_ids=postgresql.ARRAY(sa.BigInteger))
)


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    raise TypeError(f"{type(value).__name__} is not a column value")


_encode = json.JSONEncoder(default=_json_value, ensure_ascii=False, separators=(",", ":"), check_circular=False).encode


@dataclass
class NewMessagesWebhook:
    """One webhook's rows, encoded ahead, to be inserted with its batch's others (`put_off`). `stored`
    is called with its raw request's id once they are."""

    document: str
    messages: int
    latency_ms: Any  # a function of the moment the rows are written: the request log's latency
    stored: Any

    @staticmethod
    def encode(
        raw: dict[str, Any],
        messages: list[dict[str, Any]],
        attachments: list[dict[str, Any]],
        log: dict[str, Any],
        events: list[dict[str, Any]],
    ) -> str:
        """The document of a webhook: `raw` its raw request's values, `messages` its messages', each
        `attachments`' row with the `message_id` it belongs to, `log` its request log row's (but for the
        raw request id and the latency), `events` its feed events'."""
        return _encode(
            {
                "raw": {name: raw[name] for name in RAW_COLUMNS},
                "messages": [{name: row[name] for name in MESSAGE_COLUMNS} for row in messages],
                "attachments": attachments,
                "log": {name: log[name] for name in LOG_COLUMNS},
                "events": events,
            }
        )


def insert_webhooks(connection: sa.Connection, webhooks: list[NewMessagesWebhook]) -> None:
    """Insert the batch's webhooks of new messages (see the module's docstring)."""
    returned = INSERT_WEBHOOKS.run(
        connection,
        {
            "webhooks": "[" + ",".join(webhook.document for webhook in webhooks) + "]",
            "latencies": [webhook.latency_ms() for webhook in webhooks],
            "feed_lock": FEED_LOCK_KEY,
        },
    )
    note_transaction_lock(connection, FEED_LOCK_KEY)
    assert returned is not None  # a SELECT of two subqueries returns one row
    inserted, raw_ids = returned
    expected = sum(webhook.messages for webhook in webhooks)
    if inserted != expected:
        raise InsertConflict(f"{expected - inserted} of {expected} messages were there already")
    for webhook, raw_id in zip(webhooks, raw_ids, strict=True):
        webhook.stored(raw_id)
