"""GET /api/v1/messages, /api/v1/messages/<id>, /api/v1/providers/<p>/messages/<provider id>, and the
event feed GET /api/v1/events. Everything is scoped to the caller's tenant: another tenant's message is
simply not found."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, request
from sqlalchemy.orm import Session

from webhook_service.api.auth import ApiAuthenticator, current_principal
from webhook_service.api.errors import ApiError
from webhook_service.database import feed
from webhook_service.database.engine import Database
from webhook_service.database.tables import Attachment, FeedEvent, Message, StatusEventRow, storable
from webhook_service.media.links import MediaLinks
from webhook_service.model import statuses
from webhook_service.model.message_json import iso, message_json
from webhook_service.model.phone import normalize_address
from webhook_service.providers.fields import parse_time

DEFAULT_PAGE = 50
MAX_PAGE = 200
DEFAULT_EVENTS = 100
MAX_EVENTS = 1000


def read_api_blueprint(db: Database, auth: ApiAuthenticator, links: MediaLinks, *, region: str) -> Blueprint:
    blueprint = Blueprint("read_api", __name__, url_prefix="/api/v1")

    @blueprint.get("/messages")
    @auth.required
    def list_messages():
        tenant_id = current_principal().tenant_id
        limit = _int_arg("limit", DEFAULT_PAGE, 1, MAX_PAGE)
        query = sa.select(Message).where(Message.tenant_id == tenant_id)
        cursor = request.args.get("cursor")
        if cursor:
            query = query.where(Message.seq < _cursor_value(cursor))
        query = _apply_filters(query, region)
        query = query.order_by(Message.seq.desc()).limit(limit + 1)
        with db.reading() as session:
            rows = list(session.scalars(query))
            page = rows[:limit]
            return {
                "messages": _render(session, page, links),
                "nextCursor": str(page[-1].seq) if len(rows) > limit else None,
            }

    @blueprint.get("/messages/<message_id>")
    @auth.required
    def get_message(message_id: str):
        return _one(db, links, Message.id == storable(message_id))

    @blueprint.get("/providers/<provider>/messages/<path:provider_message_id>")
    @auth.required
    def get_message_by_provider_id(provider: str, provider_message_id: str):
        return _one(
            db,
            links,
            Message.provider == storable(provider),
            Message.provider_message_id == storable(provider_message_id),
        )

    @blueprint.get("/events")
    @auth.required
    def list_events():
        """The ordered feed. Pass back `nextCursor` as `after` to continue; an empty page means caught up."""
        tenant_id = current_principal().tenant_id
        after = _cursor_value(request.args.get("after") or "0")
        limit = _int_arg("limit", DEFAULT_EVENTS, 1, MAX_EVENTS)
        query = (
            sa.select(FeedEvent)
            .where(FeedEvent.tenant_id == tenant_id, FeedEvent.id > after)
            .order_by(FeedEvent.id)
            .limit(limit)
        )
        kinds = [k for k in request.args.get("type", "").split(",") if k]
        if kinds:
            unknown = sorted(set(kinds) - set(feed.TYPES))
            if unknown:
                raise ApiError(
                    400, "invalid_parameter", f"type: unknown event type {unknown[0]!r}; use {', '.join(feed.TYPES)}"
                )
            query = query.where(FeedEvent.type.in_(kinds))
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
        return _render(session, [message], links)[0]


def _render(session: Session, messages: list[Message], links: MediaLinks) -> list[dict[str, Any]]:
    """Messages with their attachments and status history, in two queries for the whole page."""
    if not messages:
        return []
    seqs = [m.seq for m in messages]
    attachments: dict[int, list[Attachment]] = defaultdict(list)
    for attachment in session.scalars(
        sa.select(Attachment).where(Attachment.message_seq.in_(seqs)).order_by(Attachment.message_seq, Attachment.index)
    ):
        attachments[attachment.message_seq].append(attachment)
    history: dict[int, list[StatusEventRow]] = defaultdict(list)
    for row in session.scalars(
        sa.select(StatusEventRow).where(StatusEventRow.message_seq.in_(seqs)).order_by(StatusEventRow.id)
    ):
        history[row.message_seq].append(row)
    return [message_json(m, attachments[m.seq], history[m.seq], links.attachment_url) for m in messages]


def _apply_filters(query: sa.Select[Any], region: str) -> sa.Select[Any]:
    args = request.args
    direction = args.get("direction")
    if direction:
        if direction not in ("inbound", "outbound"):
            raise ApiError(400, "invalid_parameter", "direction: use inbound or outbound")
        query = query.where(Message.direction == direction)
    status = args.get("status")
    if status:
        if status not in statuses.CANONICAL:
            raise ApiError(400, "invalid_parameter", f"status: unknown status {status[:32]!r}")
        query = query.where(Message.status == status)
    for name, column in (
        ("provider", Message.provider),
        ("connection", Message.connection),
        ("providerMessageId", Message.provider_message_id),
    ):
        if args.get(name):
            # Values are stored with the characters no database holds (NUL) replaced; so are lookups.
            query = query.where(column == storable(args[name]))
    if args.get("from"):
        query = query.where(Message.from_number == storable(normalize_address(args["from"], region)))
    if args.get("to"):
        number = storable(normalize_address(args["to"], region) or "")
        # Addresses are stored as a JSON list; its text contains each one as a quoted string.
        pattern = '%"' + number.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + '"%'
        query = query.where(sa.cast(Message.to_numbers, sa.Text).like(pattern, escape="\\"))
    if args.get("since"):
        query = query.where(Message.received_at >= _time_arg("since"))
    if args.get("until"):
        query = query.where(Message.received_at < _time_arg("until"))
    return query


def _time_arg(name: str) -> datetime:
    value = request.args.get(name, "")
    moment = parse_time(value)
    if moment is None:
        raise ApiError(400, "invalid_parameter", f"{name}: expected an ISO 8601 time such as 2026-01-31T12:00:00Z")
    return moment


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    value = request.args.get(name)
    if value is None or value == "":
        return default
    # isascii: str.isdigit() also accepts digits int() refuses ("²"); 9 digits is past any limit here.
    if not (value.isascii() and value.isdigit()) or len(value) > 9 or not low <= int(value) <= high:
        raise ApiError(400, "invalid_parameter", f"{name}: expected an integer from {low} to {high}")
    return int(value)


def _cursor_value(value: str) -> int:
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise ApiError(400, "invalid_parameter", "cursor: not a cursor this API returned")
    return int(value)
