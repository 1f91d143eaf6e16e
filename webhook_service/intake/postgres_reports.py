"""PostgreSQL: a batch's webhooks of status reports stored by one statement.

Status reports are most of what providers send (two or three per message sent: queued, sent,
delivered). Recorded one at a time, a report took the group commit's leader two statements of its own
(its raw request with its message's placeholder, read and locked; then the report with the message's
new status) besides the batch's request log, feed's bound lock and feed events, and cost almost twice a new
message (0.47 against 0.26 ms of the web process's CPU, and 0.28 against 0.10 ms of PostgreSQL's).

So, as for new messages (postgres_batch.py), in a group commit's first run a webhook whose events are
all status reports, each of a different message, hands over its rows already encoded as one JSON
document, and at the batch's end every such webhook goes in with one statement:

- each webhook's raw request, under an id taken from its sequence first;
- each report's message: read and locked (`FOR UPDATE`) when it is there, else inserted as a placeholder
  that carries the report's status already (a message known from no report yet takes the first one's
  status, whatever it is); both in the order of the messages' keys, so that two processes' batches
  rarely wait for each other's rows in opposite orders (when they do, PostgreSQL fails one of them as a
  deadlock's victim, and the group commit runs that batch again: database/engine.py);
- whether the report moves the message's status on (`applied`): the rule is `statuses.advances`, which
  the document carries as the list of current statuses the report's status moves on from
  (`statuses.advances_from`), so the rule is written once, in Python;
- the report, under its message's seq;
- the message's new status when applied, and a placeholder's addresses when it had none;
- the request log row, with the messages' ids;
- the feed events under the feed's bound lock, each with its message's id and current status.

Every report is assumed new, and the reports' insert has no conflict clause: a report recorded before (a
provider's retry) fails the whole statement with a unique violation. So does a report whose message the
statement could neither read nor insert (another transaction inserted it and committed while the
statement ran: its snapshot does not hold the row), whose seq is then NULL. Either failure changes
nothing, and `InsertConflict` sends the batch to run again one webhook at a time, where message_store
records each as before; so does a batch with two reports of one message (the second's rule reads the
status the first leaves, which one statement cannot: its parts see one snapshot). The statement is atomic
on its own, so a batch of nothing else runs it as a transaction of its own (`standalone`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from webhook_service.database.engine import InsertConflict
from webhook_service.database.feed import BOUND_LOCK_SQL
from webhook_service.database.prepared import PreparedStatement
from webhook_service.database.tables import EVENTS, MESSAGES, RAW_REQUESTS, REQUEST_LOG, STATUS_EVENTS
from webhook_service.intake.postgres_batch import (
    LOG_COLUMNS,
    MESSAGE_COLUMNS,
    RAW_COLUMNS,
    RAW_ID_SEQUENCE,
    column_names,
    compact,
    encode_document,
    run_batch,
    select_values,
)

# The columns the documents give values to; the statement gives the rest (the message's and raw
# request's ids, whether the report applied, the messages the request produced).
REPORT_COLUMNS = [c.key for c in STATUS_EVENTS.c if c.key not in ("id", "message_seq", "applied", "raw_request_id")]
REPORT_LOG_COLUMNS = [column for column in LOG_COLUMNS if column != "message_ids"]
REPORT_EVENT_COLUMNS = [column.key for column in EVENTS.c if column.key not in ("id", "message_id", "data")]

# The most reports one statement takes (a batch with more runs one webhook at a time, as after a
# conflict). The statement tells the planner so, a constant: `jsonb_array_elements` is estimated at 100
# rows a call whatever it is given, and the reports of 100 webhooks, 10,000 rows, put the plan's cost
# past PostgreSQL's `jit_above_cost`, so that every run was compiled with LLVM (40-60 ms of CPU for a
# statement that runs in about one). A constant rather than the batch's count as a parameter: with a
# parameter the generic plan is estimated apart from the custom ones, and PostgreSQL kept planning the
# statement anew at every run (0.08 ms of its CPU per report).
MAX_REPORTS = 64

_STATEMENT = compact(f"""
WITH webhook AS MATERIALIZED (
    SELECT document, position, nextval(CAST('{RAW_ID_SEQUENCE}' AS regclass)) AS raw_id
    FROM jsonb_array_elements(CAST(:webhooks AS jsonb)) WITH ORDINALITY AS given(document, position)
    LIMIT {MAX_REPORTS}
),
report AS MATERIALIZED (
    SELECT webhook.raw_id, webhook.position, given.position AS report_position, given.document,
        p.tenant_id, p.provider, p.provider_message_id
    FROM webhook, jsonb_array_elements(webhook.document->'reports') WITH ORDINALITY AS given(document, position),
        jsonb_populate_record(NULL::messages, given.document->'placeholder') AS p
    LIMIT {MAX_REPORTS}
),
raw_inserted AS (
    INSERT INTO raw_requests (id,{column_names(RAW_COLUMNS)})
    SELECT webhook.raw_id,{select_values(RAW_REQUESTS, "r", RAW_COLUMNS)}
    FROM webhook, jsonb_populate_record(NULL::raw_requests, webhook.document->'raw') AS r
),
existing AS MATERIALIZED (
    SELECT ordered.position, ordered.report_position, m.seq, m.id, m.status, m.has_content, m.from_number
    FROM (SELECT * FROM report ORDER BY tenant_id, provider, provider_message_id) AS ordered
    JOIN LATERAL (
        SELECT seq, id, status, has_content, from_number FROM messages
        WHERE messages.tenant_id = ordered.tenant_id AND messages.provider = ordered.provider
            AND messages.provider_message_id = ordered.provider_message_id
        FOR UPDATE
    ) AS m ON true
),
placeholder_inserted AS (
    INSERT INTO messages ({column_names(MESSAGE_COLUMNS)},raw_request_id)
    SELECT {select_values(MESSAGES, "p", MESSAGE_COLUMNS)},report.raw_id
    FROM report, jsonb_populate_record(NULL::messages, report.document->'placeholder') AS p
    ORDER BY report.tenant_id, report.provider, report.provider_message_id
    ON CONFLICT (tenant_id, provider, provider_message_id) DO NOTHING
    RETURNING seq, id, tenant_id, provider, provider_message_id
),
resolved AS MATERIALIZED (
    SELECT report.raw_id, report.position, report.report_position, report.document,
        COALESCE(created.seq, existing.seq) AS seq, COALESCE(created.id, existing.id) AS message_id,
        created.seq IS NOT NULL AS created, existing.status AS current_status,
        created.seq IS NOT NULL OR report.document->'advances_from' @> jsonb_build_array(existing.status) AS applied,
        existing.seq IS NOT NULL AND NOT existing.has_content AND existing.from_number IS NULL
            AND COALESCE(report.document->'placeholder'->>'from_number', '') <> '' AS fills_addresses
    FROM report
    LEFT JOIN placeholder_inserted AS created USING (tenant_id, provider, provider_message_id)
    LEFT JOIN existing ON existing.position = report.position AND existing.report_position = report.report_position
),
report_inserted AS (
    INSERT INTO status_events ({column_names(REPORT_COLUMNS)},message_seq,applied,raw_request_id)
    SELECT {select_values(STATUS_EVENTS, "s", REPORT_COLUMNS)},resolved.seq,resolved.applied,resolved.raw_id
    FROM resolved, jsonb_populate_record(NULL::status_events, resolved.document->'report') AS s
    ORDER BY resolved.position, resolved.report_position
    RETURNING id
),
message_updated AS (
    UPDATE messages AS m SET
        status = CASE WHEN resolved.applied THEN p.status ELSE m.status END,
        provider_status = CASE WHEN resolved.applied THEN p.provider_status ELSE m.provider_status END,
        status_updated_at = CASE WHEN resolved.applied THEN p.status_updated_at ELSE m.status_updated_at END,
        from_number = CASE WHEN resolved.fills_addresses THEN p.from_number ELSE m.from_number END,
        to_numbers = CASE WHEN resolved.fills_addresses THEN p.to_numbers ELSE m.to_numbers END,
        updated_at = p.updated_at
    FROM resolved, jsonb_populate_record(NULL::messages, resolved.document->'placeholder') AS p
    WHERE m.seq = ANY(ARRAY(SELECT seq FROM resolved WHERE NOT created AND (applied OR fills_addresses)))
        AND m.seq = resolved.seq AND NOT resolved.created AND (resolved.applied OR resolved.fills_addresses)
),
log_inserted AS (
    INSERT INTO request_log ({column_names(REPORT_LOG_COLUMNS)},raw_request_id,latency_ms,message_ids)
    SELECT {select_values(REQUEST_LOG, "l", REPORT_LOG_COLUMNS)},webhook.raw_id,
        CAST(CAST(:latencies AS jsonb)->>CAST(webhook.position - 1 AS integer) AS double precision),
        (SELECT jsonb_agg(resolved.message_id ORDER BY resolved.report_position) FROM resolved
            WHERE resolved.position = webhook.position)
    FROM webhook, jsonb_populate_record(NULL::request_log, webhook.document->'log') AS l
),
feed_lock AS ({BOUND_LOCK_SQL}),
event_inserted AS (
    INSERT INTO events ({column_names(REPORT_EVENT_COLUMNS)},message_id,data)
    SELECT {select_values(EVENTS, "e", REPORT_EVENT_COLUMNS)},resolved.message_id,
        e.data || jsonb_build_object('messageId', resolved.message_id, 'applied', resolved.applied,
            'currentStatus', CASE WHEN resolved.applied THEN e.data->>'status' ELSE resolved.current_status END)
    FROM feed_lock, resolved, jsonb_populate_record(NULL::events, resolved.document->'event') AS e
    ORDER BY resolved.position, resolved.report_position
)
SELECT (SELECT count(*) FROM report_inserted), (SELECT array_agg(raw_id ORDER BY position) FROM webhook),
    (SELECT array_agg(message_id ORDER BY position, report_position) FROM resolved)
""")

INSERT_REPORTS = PreparedStatement(
    sa.text(_STATEMENT).columns(
        inserted=sa.BigInteger(), raw_ids=postgresql.ARRAY(sa.BigInteger), message_ids=postgresql.ARRAY(sa.String)
    ),
    # Planned at every run, PostgreSQL spent 0.25 ms of CPU per report planning it; kept, its plan is
    # made anew every few seconds (prepared.py), since it reads messages.
    kept_prepared=True,
)


@dataclass
class StatusReportsWebhook:
    """One webhook's reports, encoded ahead, to be inserted with its batch's others (`put_off`). `stored`
    is called with its raw request's id and its messages' ids (one per report, in its order) once they
    are."""

    document: bytes
    keys: list[tuple[str, str, str]]  # its reports' messages: (tenant_id, provider, provider_message_id)
    latency_ms: Callable[[], float | None]  # called as the rows are written: the request log's latency
    stored: Callable[[int, list[str]], None]

    @staticmethod
    def encode(raw: dict[str, Any], reports: list[dict[str, Any]], log: dict[str, Any]) -> bytes:
        """The document of a webhook: `raw` its raw request's values, `log` its request log row's (but for
        the raw request id, the latency and the messages' ids), `reports` one dict per report:
        `placeholder` (its message's row if it is new, with the report's status), `report` (the
        status_events row but for `REPORT_COLUMNS`' complement), `advances_from` (the statuses it moves
        on from, None for none yet) and `event` (its feed event's row, whose data the statement completes
        with `messageId`, `applied` and `currentStatus`)."""
        return encode_document(
            {
                "raw": {name: raw[name] for name in RAW_COLUMNS},
                "reports": [
                    {
                        "placeholder": {name: report["placeholder"][name] for name in MESSAGE_COLUMNS},
                        "report": {name: report["report"][name] for name in REPORT_COLUMNS},
                        "advances_from": report["advances_from"],
                        "event": report["event"],
                    }
                    for report in reports
                ],
                "log": {name: log[name] for name in REPORT_LOG_COLUMNS},
            }
        )


def insert_reports(connection: sa.Connection, webhooks: list[StatusReportsWebhook]) -> None:
    """Insert the batch's webhooks of status reports (see the module's docstring)."""
    keys = [key for webhook in webhooks for key in webhook.keys]
    if len(set(keys)) != len(keys):
        raise InsertConflict("two reports of one message in the batch")
    if len(keys) > MAX_REPORTS:
        raise InsertConflict(f"{len(keys)} reports, more than one statement takes")
    # A report recorded before, or a message the statement's snapshot did not hold.
    conflict = "a report of the batch was there already, or its message was not"
    inserted, raw_ids, message_ids = run_batch(connection, INSERT_REPORTS, webhooks, conflict)
    # Without a conflict clause every report is inserted, or the statement failed.
    assert inserted == len(keys)
    produced = iter(message_ids)
    for webhook, raw_id in zip(webhooks, raw_ids, strict=True):
        webhook.stored(raw_id, [next(produced) for _ in webhook.keys])
