"""What a delivery carries: `{"type", "timestamp", "data"}`, where `data` is the event's object as the
read API returns it when the attempt is made: for message events the message (GET
/api/v1/messages/<id>: loaded by the same queries, database/messages.py, and rendered by the same
function, model/message_json.py, with freshly signed attachment URLs), for
attachment events the attachment as messages show it, with its message's id. An object no longer
stored (and endpoint.disabled) is sent as the feed recorded it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from webhook_service.database import feed
from webhook_service.database.messages import load_messages
from webhook_service.database.tables import ATTACHMENTS
from webhook_service.model.message_json import AttachmentUrl, attachment_json, iso, message_json

# A feed event as a Core row: id, tenant_id, type, message_id, attachment_id, created_at, data.
Event = Any

_MESSAGE_EVENTS = frozenset({feed.MESSAGE_RECEIVED, feed.MESSAGE_STATUS})
_ATTACHMENT_EVENTS = frozenset({feed.ATTACHMENT_STORED, feed.ATTACHMENT_REJECTED, feed.ATTACHMENT_FAILED})


def render_payloads(session: Session, events: Sequence[Event], attachment_url: AttachmentUrl) -> dict[int, bytes]:
    """The body of each event's delivery, by event id, in a few queries for the whole batch."""
    message_ids = {e.message_id for e in events if e.type in _MESSAGE_EVENTS and e.message_id}
    attachment_ids = {e.attachment_id for e in events if e.type in _ATTACHMENT_EVENTS and e.attachment_id}
    messages = {
        loaded.message.id: message_json(loaded.message, loaded.attachments, loaded.history, attachment_url)
        for loaded in load_messages(session, message_ids)
    }
    attachments: dict[str, dict[str, Any]] = {}
    if attachment_ids:
        for attachment in session.execute(sa.select(ATTACHMENTS).where(ATTACHMENTS.c.id.in_(attachment_ids))):
            attachments[attachment.id] = attachment_json(attachment, attachment_url)
    bodies = {}
    for event in events:
        data: dict[str, Any] | None = None
        if event.type in _MESSAGE_EVENTS:
            data = messages.get(event.message_id)
        elif event.type in _ATTACHMENT_EVENTS and event.attachment_id in attachments:
            data = {**attachments[event.attachment_id], "messageId": event.message_id}
        envelope = {"type": event.type, "timestamp": iso(event.created_at), "data": data or event.data}
        bodies[event.id] = json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode()
    return bodies
