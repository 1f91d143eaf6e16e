"""Finding messages with their attachments and status history: the one set of queries the read API, the
operator console and push delivery use (each renders the rows its own way).

`tenants` scopes a query (database/scope.py): the read API passes its caller's tenant.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from webhook_service.database.any_of import any_of
from webhook_service.database.engine import Database
from webhook_service.database.scope import Tenants, within
from webhook_service.database.tables import Attachment, Message, StatusEventRow, storable

# A message's status history as loaded and shown: its newest reports, this many at most. Every report is
# kept, and a sender may send any number for one message (a connection that verifies nothing takes them
# from anyone): whole, one message's history would grow every read of it, every page of messages holding
# it, and every push delivery of its events (each carries the message, so N reports cost N^2).
STATUS_HISTORY_SHOWN = 100


@functools.cache
def _queries(dialect: str) -> tuple[sa.Select, sa.Select, sa.Select]:
    """Messages by id, and the attachments and status history of messages by seq (the newest
    STATUS_HISTORY_SHOWN + 1 reports of each: one more than is shown says that some are left out). Run by
    a Session they give ORM objects; run by its Connection, Core rows with the same columns as
    attributes."""
    newest = (
        sa.select(
            StatusEventRow.id,
            sa.func.row_number()
            .over(partition_by=StatusEventRow.message_seq, order_by=StatusEventRow.id.desc())
            .label("newest_first"),
        )
        .where(any_of(StatusEventRow.message_seq, "seqs", dialect))
        .subquery()
    )
    return (
        sa.select(Message).where(any_of(Message.id, "ids", dialect)),
        sa.select(Attachment)
        .where(any_of(Attachment.message_seq, "seqs", dialect))
        .order_by(Attachment.message_seq, Attachment.index),
        sa.select(StatusEventRow)
        .where(StatusEventRow.id.in_(sa.select(newest.c.id).where(newest.c.newest_first <= STATUS_HISTORY_SHOWN + 1)))
        .order_by(StatusEventRow.id),
    )


@dataclass(frozen=True)
class MessageFilter:
    """All given conditions must hold. Addresses are compared as stored: normalize them first
    (model/phone.py)."""

    direction: str | None = None
    status: str | None = None
    provider: str | None = None
    connection: str | None = None
    provider_message_id: str | None = None
    sender: str | None = None
    recipient: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass
class LoadedMessage:
    """ORM objects (Message, Attachment, StatusEventRow), or Core rows of their tables."""

    message: Message
    attachments: list[Attachment] = field(default_factory=list)
    # Its newest STATUS_HISTORY_SHOWN reports, oldest first; older ones left out when `history_truncated`.
    history: list[StatusEventRow] = field(default_factory=list)
    history_truncated: bool = False


@dataclass
class MessagePage:
    messages: list[LoadedMessage]
    # The `before` of the next page, or None on the last one.
    next_before: int | None


def find_messages(
    db: Database, *, tenants: Tenants, where: MessageFilter, before: int | None = None, limit: int = 50
) -> MessagePage:
    """The newest messages first, `limit` at a time; `before` is the previous page's `next_before`."""
    query = _filtered(sa.select(Message), tenants, where, db.dialect)
    if before is not None:
        query = query.where(Message.seq < before)
    query = query.order_by(Message.seq.desc()).limit(limit + 1)
    with db.reading() as session:
        rows = list(session.scalars(query))
        page = rows[:limit]
        return MessagePage(_loaded(session, page), page[-1].seq if len(rows) > limit else None)


def find_message(db: Database, *conditions: Any, tenants: Tenants) -> LoadedMessage | None:
    """The one message matching `conditions` (e.g. `Message.id == ...`) within the tenants."""
    query = sa.select(Message).where(*conditions)
    if tenants is not None:
        query = query.where(within(Message.tenant_id, tenants))
    with db.reading() as session:
        message = session.scalars(query.limit(1)).first()
        return _loaded(session, [message])[0] if message is not None else None


def load_messages(session: Session, message_ids: Collection[str]) -> list[LoadedMessage]:
    """These messages (any tenant's: the caller scopes) with their attachments and status history, in
    three queries however many."""
    if not message_ids:
        return []
    by_id = _queries(session.connection().dialect.name)[0]
    return _loaded(session, session.scalars(by_id, {"ids": list(message_ids)}).all())


def load_message_rows(session: Session, message_ids: Collection[str]) -> list[LoadedMessage]:
    """The same as `load_messages` with the same queries, as Core rows in place of ORM objects (the same
    columns as attributes, so message_json renders them alike): push delivery renders a whole batch's
    messages at once, and building ORM objects costs more than rendering them."""
    if not message_ids:
        return []
    connection = session.connection()
    by_id = _queries(connection.dialect.name)[0]
    return _loaded(session, list(connection.execute(by_id, {"ids": list(message_ids)}).all()), rows=True)


def json_list_contains(column: Any, value: str, dialect: str) -> Any:
    """A condition: the JSON list in `column` holds the string `value` (exactly: no pattern, any
    characters)."""
    if dialect == "postgresql":
        return column.op("@>")(sa.func.jsonb_build_array(value))
    items = sa.func.json_each(column).table_valued("value")
    return sa.exists(sa.select(1).select_from(items).where(items.c.value == value))


def _loaded(session: Session, messages: Sequence[Any], rows: bool = False) -> list[LoadedMessage]:
    """Messages with their attachments and status history, in two queries for the whole page; as ORM
    objects, or with `rows` as Core rows."""
    if not messages:
        return []
    connection = session.connection()
    _, attachments_of, history_of = _queries(connection.dialect.name)
    run = connection.execute if rows else session.scalars
    seqs = {"seqs": [m.seq for m in messages]}
    attachments: dict[int, list[Any]] = defaultdict(list)
    for attachment in run(attachments_of, seqs).all():
        attachments[attachment.message_seq].append(attachment)
    history: dict[int, list[Any]] = defaultdict(list)
    for row in run(history_of, seqs).all():
        history[row.message_seq].append(row)
    loaded = []
    for message in messages:
        reports = history[message.seq]
        truncated = len(reports) > STATUS_HISTORY_SHOWN
        loaded.append(
            LoadedMessage(
                message, attachments[message.seq], reports[-STATUS_HISTORY_SHOWN:], history_truncated=truncated
            )
        )
    return loaded


def _filtered(query: sa.Select, tenants: Tenants, where: MessageFilter, dialect: str) -> sa.Select:
    if tenants is not None:
        query = query.where(within(Message.tenant_id, tenants))
    if where.direction:
        query = query.where(Message.direction == where.direction)
    if where.status:
        query = query.where(Message.status == where.status)
    for value, column in (
        (where.provider, Message.provider),
        (where.connection, Message.connection),
        (where.provider_message_id, Message.provider_message_id),
        (where.sender, Message.from_number),
    ):
        if value is not None:
            # Values are stored with the characters no database holds (NUL) replaced; so are lookups.
            query = query.where(column == storable(value))
    if where.recipient is not None:
        query = query.where(json_list_contains(Message.to_numbers, storable(where.recipient), dialect))
    if where.since:
        query = query.where(Message.received_at >= where.since)
    if where.until:
        query = query.where(Message.received_at < where.until)
    return query
