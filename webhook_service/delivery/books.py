"""A delivery turn's database work (engine.py runs the turn): taking the endpoint's next batch of new
events from the feed, reading the due deliveries with their bodies (payloads.py), and recording how the
attempts went.

It takes and returns plain values (the turn's place, tuples, dicts, the claimed endpoint's row), so that
it runs wherever the turn puts it: inline, on a thread beside the sending, or in a process of its own
(books_process.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from webhook_service.config.model import DeliverySettings
from webhook_service.database import feed
from webhook_service.database.engine import Database
from webhook_service.database.tables import DELIVERIES, DELIVERY_ATTEMPTS, ENDPOINTS, EVENTS, UTCDateTime
from webhook_service.delivery.endpoints import disable
from webhook_service.delivery.payloads import render_payloads
from webhook_service.model.message_json import AttachmentUrl

Row = Any


class LostClaim(Exception):
    """The turn's lease ran out and another worker took the endpoint over (or it was disabled or
    deleted meanwhile)."""


@dataclass(frozen=True)
class Place:
    """Where a turn is: its endpoint and claim, the endpoint's place in the feed, and the feed id of the
    last delivery the turn has taken (each is attempted at most once per turn)."""

    endpoint_id: str
    tenant_id: str
    event_types: tuple[str, ...]  # none: all of them
    token: str
    position: int
    cursor: int


class Due(NamedTuple):
    """A delivery to attempt: its id, its event's feed id, and the attempts made so far."""

    delivery_id: int
    id: int
    attempts: int


@dataclass(frozen=True)
class Batch:
    due: list[Due]  # in feed order
    bodies: dict[int, bytes]  # by event id; none for an event pruned from the feed meanwhile
    caught_up: bool  # no new events were left in the feed
    position: int  # the endpoint's place in the feed after taking them


@dataclass(frozen=True)
class Outcome:
    delivered: bool
    delivery: dict[str, Any]  # the FINISH (or FINISH_DELIVERED) statement's parameters
    attempt: dict[str, Any]  # a delivery_attempts row


@dataclass(frozen=True)
class Health:
    """The endpoint's health after a batch, as recorded with it."""

    failing_since: datetime | None
    consecutive_failures: int
    paused_until: datetime | None
    disabled_reason: str | None


# The endpoint as claimed by the turn holding `token`.
HELD = sa.and_(ENDPOINTS.c.id == sa.bindparam("endpoint_id"), ENDPOINTS.c.claim_token == sa.bindparam("token"))
# Only while the endpoint is still claimed by this turn and enabled: disabled meanwhile (by its owner),
# it takes no more events.
ADVANCE = sa.update(ENDPOINTS).where(HELD, ENDPOINTS.c.enabled.is_(True)).values(feed_position=sa.bindparam("position"))
STILL_THERE = sa.select(ENDPOINTS.c.id).where(ENDPOINTS.c.id == sa.bindparam("endpoint_id"))
# What a turn's POSTs depend on, as its claim read it: the claim itself, and the owner's choices that the
# sending uses (where to, signed with what, how fast). Read again during the turn (still_as_claimed).
_CLAIMED_AS = (
    ENDPOINTS.c.claim_token,
    ENDPOINTS.c.enabled,
    ENDPOINTS.c.url,
    ENDPOINTS.c.secret,
    ENDPOINTS.c.rate_limit_per_second,
)
AS_CLAIMED = sa.select(*_CLAIMED_AS).where(ENDPOINTS.c.id == sa.bindparam("endpoint_id"))
# Only while the turn holds the endpoint, enabled, at the URL it sent to: the health of that URL says
# nothing about a new one (whose counters the change reset), nor about an endpoint disabled meanwhile.
HEALTH = (
    sa.update(ENDPOINTS)
    .where(HELD, ENDPOINTS.c.enabled.is_(True), ENDPOINTS.c.url == sa.bindparam("claimed_url"))
    .values(
        failing_since=sa.bindparam("new_failing_since"),
        consecutive_failures=sa.bindparam("new_consecutive_failures"),
        paused_until=sa.bindparam("new_paused_until"),
    )
)
# A delivery given up meanwhile (its endpoint disabled) stays given up, unless this attempt delivered it:
# that happened, and is recorded.
FINISH = (
    sa.update(DELIVERIES)
    .where(
        DELIVERIES.c.id == sa.bindparam("delivery_id"),
        sa.or_(DELIVERIES.c.status == "pending", sa.bindparam("new_status", type_=sa.String) == "delivered"),
    )
    .values(
        status=sa.bindparam("new_status"),
        attempts=sa.bindparam("new_attempts"),
        next_attempt_at=sa.bindparam("new_next_attempt_at"),
        last_attempt_at=sa.bindparam("new_last_attempt_at"),
        last_http_status=sa.bindparam("new_last_http_status"),
        last_error=sa.bindparam("new_last_error"),
        completed_at=sa.bindparam("new_completed_at"),
    )
)
# The same for a delivered one, the usual outcome, with fewer values to pass.
FINISH_DELIVERED = (
    sa.update(DELIVERIES)
    .where(DELIVERIES.c.id == sa.bindparam("delivery_id"))
    .values(
        status="delivered",
        attempts=sa.bindparam("new_attempts"),
        next_attempt_at=sa.null(),
        last_attempt_at=sa.bindparam("new_last_attempt_at"),
        last_http_status=sa.bindparam("new_last_http_status"),
        last_error=sa.null(),
        completed_at=sa.bindparam("new_last_attempt_at"),
    )
)
INSERT_ATTEMPTS = sa.insert(DELIVERY_ATTEMPTS)


class TurnBooks:
    def __init__(self, db: Database, settings: DeliverySettings, attachment_url: AttachmentUrl):
        """`attachment_url` signs attachment URLs as the read API does."""
        self.db = db
        self._batch_size = settings.batch_size
        self._attachment_url = attachment_url
        batch = settings.batch_size
        # The next batch of the tenant's events after the endpoint's place: how many, and the last one.
        new_events = (
            sa.select(EVENTS.c.id)
            .where(
                EVENTS.c.tenant_id == sa.bindparam("tenant_id"),
                EVENTS.c.id > sa.bindparam("position"),
                EVENTS.c.id <= sa.bindparam("head"),  # the feed's head: nothing below it appears later
            )
            .order_by(EVENTS.c.id)
            .limit(batch)
            .subquery()
        )
        self._new_events = sa.select(sa.func.count(), sa.func.max(new_events.c.id))
        self._due = (
            sa.select(
                DELIVERIES.c.id.label("delivery_id"),
                DELIVERIES.c.attempts,
                EVENTS.c.id,
                EVENTS.c.type,
                EVENTS.c.message_id,
                EVENTS.c.attachment_id,
                EVENTS.c.created_at,
            )
            .join(EVENTS, EVENTS.c.id == DELIVERIES.c.event_id)
            .where(
                DELIVERIES.c.endpoint_id == sa.bindparam("endpoint_id"),
                DELIVERIES.c.status == "pending",
                DELIVERIES.c.next_attempt_at <= sa.bindparam("now"),
                DELIVERIES.c.event_id > sa.bindparam("cursor"),
            )
            .order_by(DELIVERIES.c.event_id)
            .limit(batch)
        )
        # The deliveries of those events (of the endpoint's types, when it names some), made in the
        # database: a replay may have made some already.
        insert = postgresql.insert if db.dialect == "postgresql" else sqlite.insert
        now = sa.bindparam("now", type_=UTCDateTime())
        batch_events = sa.select(
            sa.bindparam("endpoint_id", type_=sa.String()), EVENTS.c.id, sa.literal("pending"), sa.literal(0), now, now
        ).where(
            EVENTS.c.tenant_id == sa.bindparam("tenant_id"),
            EVENTS.c.id > sa.bindparam("position"),
            EVENTS.c.id <= sa.bindparam("last"),
        )
        columns = ["endpoint_id", "event_id", "status", "attempts", "next_attempt_at", "created_at"]
        self._make_deliveries = {
            typed: insert(DELIVERIES)
            .from_select(
                columns,
                batch_events.where(EVENTS.c.type.in_(sa.bindparam("types", expanding=True))) if typed else batch_events,
            )
            .on_conflict_do_nothing(index_elements=[DELIVERIES.c.endpoint_id, DELIVERIES.c.event_id])
            for typed in (False, True)
        }

    def next_batch(self, place: Place) -> Batch:
        """The due deliveries after the turn's cursor with their bodies, once the next batch of new events
        has its deliveries. Raises LostClaim if the turn no longer holds the endpoint."""
        position, caught_up = self._take_new_events(place)
        with self.db.reading() as session:
            rows = session.execute(
                self._due, {"endpoint_id": place.endpoint_id, "now": datetime.now(UTC), "cursor": place.cursor}
            ).all()
            bodies = render_payloads(session, rows, self._attachment_url) if rows else {}
        due = [Due(row.delivery_id, row.id, row.attempts) for row in rows]
        return Batch(due, bodies, caught_up, position)

    def _take_new_events(self, place: Place) -> tuple[int, bool]:
        """Make the deliveries of the next batch of the tenant's new events; the endpoint's place in the
        feed after them, and whether it has caught up with the feed."""
        with self.db.reading() as session:
            head = feed.head(session)  # in a statement before the events' (database/feed.py)
            count, last = session.execute(
                self._new_events, {"tenant_id": place.tenant_id, "position": place.position, "head": head}
            ).one()
        if not count:
            return place.position, True
        types = list(place.event_types)
        values = {
            "endpoint_id": place.endpoint_id,
            "tenant_id": place.tenant_id,
            "position": place.position,
            "last": last,
            "now": datetime.now(UTC),
        }
        # Not durable: the deliveries and the new place are lost together in a crash, and made again.
        with self.db.writing(durable=False) as conn:
            moved = conn.execute(ADVANCE, {"endpoint_id": place.endpoint_id, "token": place.token, "position": last})
            if moved.rowcount != 1:
                raise LostClaim()  # rolls the transaction back
            conn.execute(self._make_deliveries[bool(types)], {**values, "types": types} if types else values)
        return last, count < self._batch_size

    def still_as_claimed(self, endpoint: Row) -> bool:
        """Whether the endpoint (the claimed row) is still held by the turn, enabled, and as its owner had
        it then (_CLAIMED_AS): one read by primary key."""
        with self.db.reading() as session:
            now = session.execute(AS_CLAIMED, {"endpoint_id": endpoint.id}).first()
        return now is not None and tuple(now) == (
            endpoint.claim_token,
            True,
            endpoint.url,
            endpoint.secret,
            endpoint.rate_limit_per_second,
        )

    def record(self, endpoint: Row, outcomes: list[Outcome], health: Health) -> None:
        """The outcomes, their attempts and the endpoint's (the claimed row) health as it was after
        them, in one transaction."""
        if not outcomes:
            return
        values = {
            "endpoint_id": endpoint.id,
            "token": endpoint.claim_token,
            "claimed_url": endpoint.url,
            "new_failing_since": health.failing_since,
            "new_consecutive_failures": health.consecutive_failures,
            "new_paused_until": health.paused_until,
        }

        def record(conn: sa.Connection) -> None:
            if conn.execute(STILL_THERE, {"endpoint_id": endpoint.id}).first() is None:
                return  # deleted during the turn, its deliveries with it
            delivered = [outcome.delivery for outcome in outcomes if outcome.delivered]
            others = [outcome.delivery for outcome in outcomes if not outcome.delivered]
            if delivered:
                conn.execute(FINISH_DELIVERED, delivered)
            if others:
                conn.execute(FINISH, others)
            conn.execute(INSERT_ATTEMPTS, [outcome.attempt for outcome in outcomes])
            if conn.execute(HEALTH, values).rowcount != 1:
                return  # changed or taken over during the turn: its health is not the turn's to record
            if health.disabled_reason is not None:
                current = SimpleNamespace(**{**endpoint._asdict(), "failing_since": health.failing_since})
                disable(conn, current, health.disabled_reason, datetime.now(UTC), announce=True)

        # Committed together with what the other delivery and download threads record at the moment.
        self.db.group_commit.run(record)
