"""What a delivery carries: `{"type", "timestamp", "data"}`, where `data` is the event's object as the
read API returns it when the attempt is made: for message events the message (GET
/api/v1/messages/<id>: loaded by the same queries, database/messages.py, and rendered by the same
function, model/message_json.py, with freshly signed attachment URLs), for
attachment events the attachment as messages show it, with its message's id. An object no longer
stored (and endpoint.disabled) is sent as the feed recorded it.

A batch is rendered at once: each message once however many of the batch's events name it (its JSON
text spliced into each envelope), and the feed's own copy of an event read only for the few events
whose object is gone."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from webhook_service.database import feed
from webhook_service.database.any_of import any_of
from webhook_service.database.messages import load_message_rows
from webhook_service.database.tables import ATTACHMENTS, EVENTS
from webhook_service.model.message_json import AttachmentUrl, attachment_json, iso, message_json

# A feed event as a Core row with at least id, type, message_id, attachment_id and created_at.
Event = Any

_MESSAGE_EVENTS = frozenset({feed.MESSAGE_RECEIVED, feed.MESSAGE_STATUS})
_ATTACHMENT_EVENTS = frozenset({feed.ATTACHMENT_STORED, feed.ATTACHMENT_REJECTED, feed.ATTACHMENT_FAILED})


@functools.cache
def _queries(dialect: str) -> tuple[sa.Select, sa.Select]:
    """Attachments by id, and the feed's own data of events by id."""
    return (
        sa.select(ATTACHMENTS).where(any_of(ATTACHMENTS.c.id, "ids", dialect)),
        sa.select(EVENTS.c.id, EVENTS.c.data).where(any_of(EVENTS.c.id, "ids", dialect)),
    )


def render_payloads(session: Session, events: Sequence[Event], attachment_url: AttachmentUrl) -> dict[int, bytes]:
    """The body of each event's delivery, by event id, in a few queries for the whole batch (none for an
    event no longer in the feed)."""
    message_ids = {e.message_id for e in events if e.type in _MESSAGE_EVENTS and e.message_id}
    attachment_ids = {e.attachment_id for e in events if e.type in _ATTACHMENT_EVENTS and e.attachment_id}
    messages = {
        loaded.message.id: _dumps(
            message_json(
                loaded.message,
                loaded.attachments,
                loaded.history,
                attachment_url,
                history_truncated=loaded.history_truncated,
            )
        )
        for loaded in load_message_rows(session, message_ids)
    }
    connection = session.connection()
    attachments_by_id, feed_data = _queries(connection.dialect.name)
    attachments: dict[str, dict[str, Any]] = {}
    if attachment_ids:
        for attachment in connection.execute(attachments_by_id, {"ids": list(attachment_ids)}).all():
            attachments[attachment.id] = attachment_json(attachment, attachment_url)
    data: dict[int, str] = {}
    for event in events:
        if event.type in _MESSAGE_EVENTS and event.message_id in messages:
            data[event.id] = messages[event.message_id]
        elif event.type in _ATTACHMENT_EVENTS and event.attachment_id in attachments:
            data[event.id] = _dumps({**attachments[event.attachment_id], "messageId": event.message_id})
    gone = [event.id for event in events if event.id not in data]
    if gone:
        for event_id, recorded in connection.execute(feed_data, {"ids": gone}).all():
            data[event_id] = _dumps(recorded)
    # An event pruned from the feed meanwhile has no body: its deliveries went with it.
    return {event.id: _envelope(event, data[event.id]) for event in events if event.id in data}


def _envelope(event: Event, data: str) -> bytes:
    """`_dumps({"type", "timestamp", "data"})` to the byte, with `data` already serialized."""
    timestamp = iso(event.created_at)
    return f'{{"type":{_string(event.type)},"timestamp":{_string(timestamp) if timestamp else "null"},"data":{data}}}'.encode()


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# A string as _dumps writes it (json's own function: quotes, and escapes only what JSON requires).
_string = json.encoder.encode_basestring
