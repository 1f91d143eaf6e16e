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
from webhook_service.database.messages import LoadedMessage, MessageFilter, find_message, find_messages
from webhook_service.database.tables import Attachment, FeedEvent, Message, storable
from webhook_service.media.links import MediaLinks
from webhook_service.model.message_json import iso, message_json
from webhook_service.model.phone import normalize_address


def read_api_blueprint(db: Database, auth: ApiAuthenticator, links: MediaLinks, *, region: str) -> Blueprint:
    blueprint = Blueprint("read_api", __name__, url_prefix="/api/v1")

    @blueprint.get("/messages")
    @auth.required
    def list_messages():
        asked = validated(MessageQuery, request.args)
        page = find_messages(
            db,
            tenants={current_principal().tenant_id},
            where=_message_filter(asked, region),
            before=int(asked.cursor) if asked.cursor else None,
            limit=asked.limit,
        )
        return {
            "messages": [_render(loaded, links) for loaded in page.messages],
            "nextCursor": str(page.next_before) if page.next_before is not None else None,
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
        with db.reading() as session:
            # The tenant's last event first, and nothing past it: with a `type` filter a page that is not
            # full has read every event up to it, so the cursor moves there, and the next poll does not
            # read those again (a consumer that polls for a rare type read the whole feed since its last
            # match, every time). Nothing at or below it can appear later (database/feed.py, `head`).
            head = feed.tenant_head(session, tenant_id, after)
            events: list[FeedEvent] = []
            if head > after:  # else nothing new for the tenant (most polls): no query for it
                query = (
                    sa.select(FeedEvent)
                    .where(FeedEvent.tenant_id == tenant_id, FeedEvent.id > after, FeedEvent.id <= head)
                    .order_by(FeedEvent.id)
                    .limit(asked.limit)
                )
                if asked.types:
                    query = query.where(FeedEvent.type.in_(asked.types))
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
        # A page that is not full read up to the head.
        last = max(after, head) if len(events) < asked.limit else events[-1].id
        return {"events": rendered, "nextCursor": str(last)}

    return blueprint


def _one(db: Database, links: MediaLinks, *conditions: Any) -> dict[str, Any]:
    loaded = find_message(db, *conditions, tenants={current_principal().tenant_id})
    if loaded is None:
        raise ApiError(404, "not_found", "No such message.")
    return _render(loaded, links)


def _render(loaded: LoadedMessage, links: MediaLinks) -> dict[str, Any]:
    return message_json(
        loaded.message,
        loaded.attachments,
        loaded.history,
        links.attachment_url,
        history_truncated=loaded.history_truncated,
    )


def _message_filter(asked: MessageQuery, region: str) -> MessageFilter:
    # Addresses in any format are compared in the form they are stored (E.164 for phone numbers).
    return MessageFilter(
        direction=asked.direction,
        status=asked.status,
        provider=asked.provider,
        connection=asked.connection,
        provider_message_id=asked.provider_message_id,
        sender=normalize_address(asked.sender, region) or "" if asked.sender else None,
        recipient=normalize_address(asked.recipient, region) or "" if asked.recipient else None,
        since=asked.since,
        until=asked.until,
    )
