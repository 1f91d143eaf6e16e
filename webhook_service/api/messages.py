"""GET /api/v1/messages, /api/v1/messages/<id>, /api/v1/providers/<p>/messages/<provider id>, and the
event feed GET /api/v1/events. Everything is scoped to the caller's tenant: another tenant's message is
simply not found. Parameters are checked, after authentication, by the models of api/read_params.py,
which the OpenAPI document is generated from; URL variables are named as the document names them."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import Blueprint, request

from webhook_service.api.auth import ApiAuthenticator, current_principal
from webhook_service.api.errors import ApiError
from webhook_service.api.parameters import validated
from webhook_service.api.read_params import EventQuery, MessagePath, MessageQuery, ProviderMessagePath
from webhook_service.database import feed
from webhook_service.database.engine import Database
from webhook_service.database.tables import Attachment, FeedEvent, Message, storable
from webhook_service.media.links import MediaLinks
from webhook_service.model.message_json import iso, render_messages
from webhook_service.model.phone import normalize_address


def read_api_blueprint(db: Database, auth: ApiAuthenticator, links: MediaLinks, *, region: str) -> Blueprint:
    blueprint = Blueprint("read_api", __name__, url_prefix="/api/v1")

    @blueprint.get("/messages")
    @auth.required
    def list_messages():
        tenant_id = current_principal().tenant_id
        asked = validated(MessageQuery, request.args)
        limit = asked.limit
        query = sa.select(Message).where(Message.tenant_id == tenant_id)
        if asked.cursor:
            query = query.where(Message.seq < int(asked.cursor))
        query = _apply_filters(query, asked, region)
        query = query.order_by(Message.seq.desc()).limit(limit + 1)
        with db.reading() as session:
            rows = list(session.scalars(query))
            page = rows[:limit]
            return {
                "messages": render_messages(session, page, links.attachment_url),
                "nextCursor": str(page[-1].seq) if len(rows) > limit else None,
            }

    @blueprint.get("/messages/<messageId>")
    @auth.required
    def get_message(**path_values: str):
        path = validated(MessagePath, path_values)
        return _one(db, links, Message.id == storable(path.message_id))

    @blueprint.get("/providers/<provider>/messages/<path:providerMessageId>")
    @auth.required
    def get_message_by_provider_id(**path_values: str):
        path = validated(ProviderMessagePath, path_values)
        return _one(
            db,
            links,
            Message.provider == storable(path.provider),
            Message.provider_message_id == storable(path.provider_message_id),
        )

    @blueprint.get("/events")
    @auth.required
    def list_events():
        """The ordered feed. Pass back `nextCursor` as `after` to continue; an empty page means caught up."""
        tenant_id = current_principal().tenant_id
        asked = validated(EventQuery, request.args)
        after = int(asked.after)
        query = (
            sa.select(FeedEvent)
            .where(FeedEvent.tenant_id == tenant_id, FeedEvent.id > after)
            .order_by(FeedEvent.id)
            .limit(asked.limit)
        )
        if asked.types:
            query = query.where(FeedEvent.type.in_(asked.types))
        with db.reading() as session:
            events = list(session.scalars(query))
            stored_ids = [e.attachment_id for e in events if e.type == feed.ATTACHMENT_STORED]
            stored = (
                {a.id: a for a in session.scalars(sa.select(Attachment).where(Attachment.id.in_(stored_ids)))}
                if stored_ids
                else {}
            )
            rendered = []
            for event in events:
                data = dict(event.data)
                if event.type == feed.ATTACHMENT_STORED and event.attachment_id in stored:
                    data["url"] = links.attachment_url(stored[event.attachment_id])
                rendered.append(
                    {"id": str(event.id), "type": event.type, "createdAt": iso(event.created_at), "data": data}
                )
        next_cursor = rendered[-1]["id"] if rendered else str(after)
        return {"events": rendered, "nextCursor": next_cursor}

    return blueprint


def _one(db: Database, links: MediaLinks, *conditions: Any) -> dict[str, Any]:
    query = sa.select(Message).where(Message.tenant_id == current_principal().tenant_id, *conditions)
    with db.reading() as session:
        message = session.scalars(query.limit(1)).first()
        if message is None:
            raise ApiError(404, "not_found", "No such message.")
        return render_messages(session, [message], links.attachment_url)[0]


def _apply_filters(query: sa.Select[Any], asked: MessageQuery, region: str) -> sa.Select[Any]:
    if asked.direction:
        query = query.where(Message.direction == asked.direction)
    if asked.status:
        query = query.where(Message.status == asked.status)
    for value, column in (
        (asked.provider, Message.provider),
        (asked.connection, Message.connection),
        (asked.provider_message_id, Message.provider_message_id),
    ):
        if value:
            # Values are stored with the characters no database holds (NUL) replaced; so are lookups.
            query = query.where(column == storable(value))
    if asked.sender:
        query = query.where(Message.from_number == storable(normalize_address(asked.sender, region)))
    if asked.recipient:
        number = storable(normalize_address(asked.recipient, region) or "")
        # Addresses are stored as a JSON list; its text contains each one as a quoted string.
        pattern = '%"' + number.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + '"%'
        query = query.where(sa.cast(Message.to_numbers, sa.Text).like(pattern, escape="\\"))
    if asked.since:
        query = query.where(Message.received_at >= asked.since)
    if asked.until:
        query = query.where(Message.received_at < asked.until)
    return query
