"""Delivering the event feed to endpoints: the worker's side of push delivery.

The feed is the outbox. Work is done in *turns*, one endpoint per turn, on the queue's worker threads
(any number of them, in any number of processes and hosts). A turn claims the endpoint (a lease and a
token, as attachments have), so no two workers ever deliver to one endpoint at the same time, then, until
nothing is due or its time (delivery.turn_seconds) is up:

1. takes the tenant's events after the endpoint's place in the feed, a batch at a time, makes a pending
   delivery for each event of the endpoint's types, and moves its place past them (one transaction);
2. delivers the due deliveries one after the other in feed order, over one kept connection, paced by the
   endpoint's rate limit, each signed with the endpoint's active secrets (sender.py, payloads.py);
3. records the outcomes, the attempts and the endpoint's health in one transaction.

From a turn's second batch on, reading the next batch and recording the last one happen on a thread of
the turn's own while the current one is sent (_Books), so the database work overlaps the receiver's.

It then releases the endpoint and asks the queue for the next turn: at once if work is left, at the next
due retry or the end of a pause otherwise. The queue is only a trigger: a worker watching the feed wakes
endpoints when events arrive (wake_for_new_events), and the minute's sweep wakes any endpoint with work
that no task is on its way for, so a lost task, a killed worker or a Redis outage delays deliveries and
loses none.

Failures. A non-2xx answer, a timeout or any connection error is retried after the next wait of
delivery.retry_schedule_seconds (with jitter), in a later turn (a delivery gets at most one attempt per
turn); once the waits are spent the delivery is `failed`. 410 Gone disables the endpoint at once;
failing every attempt for delivery.disable_after_hours disables it too. Both announce it with an
endpoint.disabled event. So that a dead endpoint costs one attempt per wait rather than one per pending
event, an attempt that got no answer at all (timeout, refused connection), or PAUSE_AFTER failed answers
in a row, pause the endpoint: nothing is sent to it until the pause (the same schedule) is over, and
then its oldest due delivery goes first; a success ends the pause. A dead endpoint therefore holds a
worker for one timeout per pause, and other endpoints' turns go on meanwhile on the other threads.

Ordering. Deliveries to an endpoint are attempted one at a time in feed order, so while the endpoint
answers 2xx it receives every event in feed order (the events of one message included: message.received
before the message.status that follows). A failed delivery is retried later while the following ones go
on: after a failure, order is not kept. Delivery is at least once: an attempt whose outcome was not
recorded (a worker killed mid-turn) is made again, with the same webhook-id.
"""

from __future__ import annotations

import functools
import logging
import random
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from webhook_service.config.model import DeliverySettings
from webhook_service.database.engine import Database
from webhook_service.database.tables import DELIVERIES, DELIVERY_ATTEMPTS, ENDPOINTS, EVENTS, UTCDateTime
from webhook_service.delivery.endpoints import disable
from webhook_service.delivery.payloads import render_payloads
from webhook_service.delivery.sender import Answer, EndpointSession
from webhook_service.delivery.signing import Signer
from webhook_service.delivery.urls import delivery_rules, endpoint_target
from webhook_service.model.message_json import AttachmentUrl
from webhook_service.network.connections import Connector, Resolver
from webhook_service.network.targets import OutboundError
from webhook_service.observability import metrics
from webhook_service.observability.logs import log

logger = logging.getLogger("webhook_service.delivery")

# Enqueue turns for these endpoints, now or at a due time.
Enqueue = Callable[[list[str], "datetime | None"], None]
Row = Any

# Failed attempts in a row after which an endpoint is paused (see the module docstring).
PAUSE_AFTER = 3
# The sweep leaves alone what became due this recently: its own task is most likely on its way.
SWEEP_GRACE = timedelta(seconds=30)
# A lease outlasts the longest turn: its time, one more attempt, and room for the database.
_LEASE_MARGIN_SECONDS = 60
# Jitter: each wait is stretched or shortened by up to this fraction, so retries do not come in lockstep.
_JITTER = 0.1


def webhook_id(event_id: int, endpoint_id: str) -> str:
    """The same for every attempt of one event to one endpoint (replays too), so a receiver can deduplicate."""
    return f"evt_{event_id}_{endpoint_id}"


def jittered(seconds: float) -> float:
    return seconds * random.uniform(1 - _JITTER, 1 + _JITTER)


class _LostClaim(Exception):
    """The turn's lease ran out and another worker took the endpoint over."""


@dataclass
class _Turn:
    endpoint: Row  # as claimed
    token: str
    ends_at: float  # time.monotonic()
    position: int
    failing_since: datetime | None
    consecutive_failures: int
    paused_until: datetime | None
    disabled_reason: str | None = None
    # The feed id of the last delivery taken in this turn: each is attempted at most once per turn (a
    # retry that falls due meanwhile waits for the next).
    cursor: int = 0
    cut_short: bool = False  # stopped with work left (its time was up)
    outcomes: dict[str, int] = field(default_factory=dict)
    signer: Signer = field(init=False)

    def __post_init__(self) -> None:
        endpoint = self.endpoint
        self.signer = Signer(endpoint.secret, endpoint.previous_secret, endpoint.previous_secret_expires_at)

    def health(self) -> _Health:
        return _Health(self.failing_since, self.consecutive_failures, self.paused_until, self.disabled_reason)

    def paused(self, now: datetime) -> bool:
        return self.paused_until is not None and self.paused_until > now

    def out_of_time(self) -> bool:
        if time.monotonic() >= self.ends_at:
            self.cut_short = True
        return self.cut_short


@dataclass(frozen=True)
class _Health:
    """The endpoint's health after a batch, as recorded with it."""

    failing_since: datetime | None
    consecutive_failures: int
    paused_until: datetime | None
    disabled_reason: str | None


class _Books:
    """A turn's database work beside its sending: from a full batch or the second one on, the next batch
    is read and the last one recorded on a thread of the turn's own while this one is sent, so that
    neither waits for the other. A turn of one small batch (the usual one when traffic is light) starts no
    thread: its work runs inline."""

    def __init__(self) -> None:
        self._executor: ThreadPoolExecutor | None = None

    @property
    def started(self) -> bool:
        return self._executor is not None

    def start(self) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="delivery-books")

    def run(self, function: Callable[..., Any], *arguments: Any) -> Future[Any]:
        if self._executor is not None:
            return self._executor.submit(function, *arguments)
        done: Future[Any] = Future()
        try:
            done.set_result(function(*arguments))
        except BaseException as error:  # noqa: BLE001  # handed to whoever waits for the result, as the thread would
            done.set_exception(error)
        return done

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)


@dataclass(frozen=True)
class _Outcome:
    delivered: bool
    delivery: dict[str, Any]  # the FINISH (or FINISH_DELIVERED) statement's parameters
    attempt: dict[str, Any]  # a delivery_attempts row


_UNCLAIMED = sa.or_(ENDPOINTS.c.claimed_until.is_(None), ENDPOINTS.c.claimed_until < sa.bindparam("now"))
CLAIM = (
    sa.update(ENDPOINTS)
    .where(ENDPOINTS.c.id == sa.bindparam("endpoint_id"), ENDPOINTS.c.enabled.is_(True), _UNCLAIMED)
    .values(claimed_until=sa.bindparam("lease_until"), claim_token=sa.bindparam("token"))
    .returning(*ENDPOINTS.c)
)
_HELD = sa.and_(ENDPOINTS.c.id == sa.bindparam("endpoint_id"), ENDPOINTS.c.claim_token == sa.bindparam("token"))
RELEASE = sa.update(ENDPOINTS).where(_HELD).values(claimed_until=None, claim_token=None)
# Only while the endpoint is still claimed by this turn and enabled: disabled meanwhile (by its owner),
# it takes no more events.
ADVANCE = (
    sa.update(ENDPOINTS).where(_HELD, ENDPOINTS.c.enabled.is_(True)).values(feed_position=sa.bindparam("position"))
)
STILL_THERE = sa.select(ENDPOINTS.c.id).where(ENDPOINTS.c.id == sa.bindparam("endpoint_id"))
HEALTH = (
    sa.update(ENDPOINTS)
    .where(ENDPOINTS.c.id == sa.bindparam("endpoint_id"))
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
        next_attempt_at=None,
        last_attempt_at=sa.bindparam("new_last_attempt_at"),
        last_http_status=sa.bindparam("new_last_http_status"),
        last_error=None,
        completed_at=sa.bindparam("new_last_attempt_at"),
    )
)
INSERT_ATTEMPTS = sa.insert(DELIVERY_ATTEMPTS)
# After a turn: what is left for the endpoint, and how old the oldest of it is.
PENDING_SUMMARY = (
    sa.select(sa.func.min(DELIVERIES.c.next_attempt_at), sa.func.min(EVENTS.c.created_at))
    .select_from(DELIVERIES.join(EVENTS, EVENTS.c.id == DELIVERIES.c.event_id))
    .where(DELIVERIES.c.endpoint_id == sa.bindparam("endpoint_id"), DELIVERIES.c.status == "pending")
)
FIRST_NEW_EVENT = (
    sa.select(EVENTS.c.created_at)
    .where(EVENTS.c.tenant_id == sa.bindparam("tenant_id"), EVENTS.c.id > sa.bindparam("position"))
    .order_by(EVENTS.c.id)
    .limit(1)
)
_WAKEABLE = sa.and_(
    ENDPOINTS.c.enabled.is_(True),
    sa.or_(ENDPOINTS.c.paused_until.is_(None), ENDPOINTS.c.paused_until <= sa.bindparam("now")),
)
# Endpoints with work no task may be on its way for: due long enough ago, or events long enough in the feed.
SWEEP = sa.select(ENDPOINTS.c.id).where(
    _WAKEABLE,
    _UNCLAIMED,
    sa.or_(
        sa.exists().where(
            DELIVERIES.c.endpoint_id == ENDPOINTS.c.id,
            DELIVERIES.c.status == "pending",
            DELIVERIES.c.next_attempt_at <= sa.bindparam("overdue"),
        ),
        sa.exists().where(
            EVENTS.c.tenant_id == ENDPOINTS.c.tenant_id,
            EVENTS.c.id > ENDPOINTS.c.feed_position,
            EVENTS.c.created_at <= sa.bindparam("overdue"),
        ),
    ),
)
FEED_HEAD = sa.select(sa.func.max(EVENTS.c.id))
NEW_EVENT_KINDS = (
    sa.select(EVENTS.c.tenant_id, EVENTS.c.type)
    .where(EVENTS.c.id > sa.bindparam("after"), EVENTS.c.id <= sa.bindparam("head"))
    .distinct()
)
# Endpoints to wake for new events. One in a turn is left alone: the turn looks for new events once it
# has released the endpoint, and an event this query sees was committed before that release.
WAKEABLE_ENDPOINTS = sa.select(ENDPOINTS.c.id, ENDPOINTS.c.tenant_id, ENDPOINTS.c.event_types).where(
    _WAKEABLE, _UNCLAIMED, ENDPOINTS.c.tenant_id.in_(sa.bindparam("tenants", expanding=True))
)
ENABLED_ENDPOINTS = sa.select(ENDPOINTS.c.id, ENDPOINTS.c.tenant_id, ENDPOINTS.c.feed_position).where(
    ENDPOINTS.c.enabled.is_(True)
)


class DeliveryEngine:
    def __init__(
        self,
        db: Database,
        settings: DeliverySettings,
        *,
        attachment_url: AttachmentUrl,
        enqueue: Enqueue,
        resolver: Resolver | None = None,
    ):
        """`attachment_url` signs attachment URLs as the read API does; `enqueue` asks the queue for
        turns; `resolver` resolves endpoint hosts (None: the system's; tests substitute their own)."""
        self.db = db
        self.settings = settings
        self._attachment_url = attachment_url
        self._enqueue = enqueue
        self._connector = Connector(delivery_rules(settings), resolver, action="Delivering to")
        self._schedule = [float(wait) for wait in settings.retry_schedule_seconds]
        self._disable_after = timedelta(hours=settings.disable_after_hours)
        self._lease = timedelta(seconds=settings.turn_seconds + settings.timeout_seconds + _LEASE_MARGIN_SECONDS)
        # When this process last sent to each endpoint: the rate limit's pace across its turns here.
        self._last_sent: dict[str, float] = {}
        batch = settings.batch_size
        # The next batch of the tenant's events after the endpoint's place: how many, and the last one.
        new_events = (
            sa.select(EVENTS.c.id)
            .where(EVENTS.c.tenant_id == sa.bindparam("tenant_id"), EVENTS.c.id > sa.bindparam("position"))
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

    # A turn --------------------------------------------------------------------------------------
    def drain(self, endpoint_id: str) -> dict[str, int] | None:
        """One turn on the endpoint if it is enabled and no other worker has it. Returns how many
        attempts ended each way (delivered, retry, failed, disabled), or None when there was no turn."""
        started = time.monotonic()
        turn = self._claim(endpoint_id)
        if turn is None:
            return None
        session = self._session(turn.endpoint.url)
        try:
            self._run(turn, session)
        except _LostClaim:
            # Taken over by another worker (the lease ran out), or disabled or deleted meanwhile.
            log(logger, "delivery_turn_ended", endpoint_id=endpoint_id, reason="claim_lost_or_disabled")
            self._release(turn)
            return turn.outcomes
        finally:
            session.close()
        self._release(turn)
        self._ask_for_next_turn(turn)
        if turn.outcomes or turn.disabled_reason:
            now = datetime.now(UTC)
            log(
                logger,
                "delivery_turn",
                logging.WARNING if turn.disabled_reason else logging.INFO,
                endpoint_id=endpoint_id,
                tenant=turn.endpoint.tenant_id,
                outcomes=turn.outcomes,
                disabled=turn.disabled_reason,
                paused_until=turn.paused_until.isoformat() if turn.paused_until and turn.paused(now) else None,
                duration_ms=round((time.monotonic() - started) * 1000, 1),
            )
        return turn.outcomes

    def _session(self, url: str) -> EndpointSession | _RefusedSession:
        try:
            return EndpointSession(self._connector, endpoint_target(self._connector, url))
        except OutboundError as error:
            # The URL was allowed when it was registered and the rules changed since (allow_http off):
            # every attempt fails, and the endpoint ends disabled like any that keeps failing.
            return _RefusedSession(error)

    def _run(self, turn: _Turn, session: EndpointSession | _RefusedSession) -> None:
        books = _Books()
        try:
            batch = books.run(self._next_batch, turn)
            recorded: Future[None] | None = None
            while True:
                due, bodies, caught_up = batch.result()
                prefetched = False
                if due:
                    turn.cursor = due[-1].id
                    if len(due) == self.settings.batch_size or turn.outcomes:
                        books.start()  # a full batch, or a second one: more is likely to follow
                    if books.started:
                        batch, prefetched = books.run(self._next_batch, turn), True
                    outcomes = self._send(turn, session, due, bodies)
                    if recorded is not None:
                        recorded.result()
                    recorded = books.run(self._record, turn, outcomes, turn.health())
                if (
                    turn.disabled_reason is not None
                    or turn.paused(datetime.now(UTC))
                    or turn.out_of_time()
                    or (not due and caught_up)
                ):
                    break
                if not prefetched:
                    batch = books.run(self._next_batch, turn)
            if recorded is not None:
                recorded.result()
        finally:
            books.close()

    def _next_batch(self, turn: _Turn) -> tuple[list[Row], dict[int, bytes], bool]:
        """The next due deliveries after the turn's cursor with their bodies, once the next batch of new
        events has its deliveries; and whether the endpoint has caught up with the feed."""
        caught_up = self._take_new_events(turn)
        due, bodies = self._due_deliveries(turn)
        return due, bodies, caught_up

    def _claim(self, endpoint_id: str) -> _Turn | None:
        now = datetime.now(UTC)
        token = str(uuid.uuid4())
        # Not durable: a claim lost in a crash of the machine is a lease that never happened.
        with self.db.writing(durable=False) as conn:
            endpoint = conn.execute(
                CLAIM, {"endpoint_id": endpoint_id, "now": now, "lease_until": now + self._lease, "token": token}
            ).first()
        if endpoint is None:
            return None
        return _Turn(
            endpoint=endpoint,
            token=token,
            ends_at=time.monotonic() + self.settings.turn_seconds,
            position=endpoint.feed_position,
            failing_since=endpoint.failing_since,
            consecutive_failures=endpoint.consecutive_failures,
            paused_until=endpoint.paused_until,
        )

    def _take_new_events(self, turn: _Turn) -> bool:
        """Make the deliveries of the next batch of the tenant's new events; True once caught up."""
        endpoint = turn.endpoint
        with self.db.reading() as session:
            count, last = session.execute(
                self._new_events, {"tenant_id": endpoint.tenant_id, "position": turn.position}
            ).one()
        if not count:
            return True
        types = list(endpoint.event_types or ())
        values = {
            "endpoint_id": endpoint.id,
            "tenant_id": endpoint.tenant_id,
            "position": turn.position,
            "last": last,
            "now": datetime.now(UTC),
        }
        # Not durable: the deliveries and the new place are lost together in a crash, and made again.
        with self.db.writing(durable=False) as conn:
            moved = conn.execute(ADVANCE, {"endpoint_id": endpoint.id, "token": turn.token, "position": last})
            if moved.rowcount != 1:
                raise _LostClaim()  # rolls the transaction back
            conn.execute(self._make_deliveries[bool(types)], {**values, "types": types} if types else values)
        turn.position = last
        return bool(count < self.settings.batch_size)

    def _due_deliveries(self, turn: _Turn) -> tuple[list[Row], dict[int, bytes]]:
        with self.db.reading() as session:
            due = list(
                session.execute(
                    self._due, {"endpoint_id": turn.endpoint.id, "now": datetime.now(UTC), "cursor": turn.cursor}
                ).all()
            )
            bodies = render_payloads(session, due, self._attachment_url) if due else {}
        return due, bodies

    def _send(
        self, turn: _Turn, session: EndpointSession | _RefusedSession, due: Sequence[Row], bodies: dict[int, bytes]
    ) -> list[_Outcome]:
        """Attempt the due deliveries in order until the endpoint is paused or disabled or the turn's
        time is up; the outcomes, to record."""
        outcomes: list[_Outcome] = []
        endpoint = turn.endpoint
        for row in due:
            if turn.out_of_time() or (turn.paused_until is not None and turn.paused(datetime.now(UTC))):
                break
            body = bodies.get(row.id)
            if body is None:
                continue  # the event left the feed since the batch was read, its deliveries with it
            self._pace(endpoint)
            sent_at = datetime.now(UTC)
            delivery_id = webhook_id(row.id, endpoint.id)
            headers = {
                "webhook-id": delivery_id,
                "webhook-timestamp": str(int(sent_at.timestamp())),
                "webhook-signature": turn.signer.header(delivery_id, sent_at, body),
            }
            answer = session.post(body, headers)
            outcomes.append(self._judge(turn, row, answer, sent_at))
            if turn.disabled_reason is not None:
                break
        return outcomes

    def _pace(self, endpoint: Row) -> None:
        """Wait as long as the endpoint's rate limit asks since the last delivery to it."""
        if not endpoint.rate_limit_per_second:
            return
        interval = 1.0 / endpoint.rate_limit_per_second
        wait = self._last_sent.get(endpoint.id, 0.0) + interval - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self._last_sent[endpoint.id] = time.monotonic()

    def _judge(self, turn: _Turn, row: Row, answer: Answer, sent_at: datetime) -> _Outcome:
        """The outcome of one attempt for the delivery and the endpoint's health."""
        attempts = row.attempts + 1
        next_attempt_at = completed_at = None
        if answer.delivered:
            outcome, status = "delivered", "delivered"
            completed_at = sent_at
            turn.failing_since, turn.consecutive_failures, turn.paused_until = None, 0, None
        else:
            self._count_failure(turn, answer, sent_at)
            if turn.disabled_reason is not None:
                outcome, status, completed_at = "disabled", "failed", sent_at
            elif attempts > len(self._schedule):
                outcome, status, completed_at = "failed", "failed", sent_at
            else:
                outcome, status = "retry", "pending"
                next_attempt_at = sent_at + timedelta(seconds=jittered(self._schedule[attempts - 1]))
        error = answer.error
        reason = error.code if error else f"http_{answer.http_status}"
        turn.outcomes[outcome] = turn.outcomes.get(outcome, 0) + 1
        _attempts_counter(outcome, "none" if answer.delivered else _reason_label(answer)).inc()
        metrics.DELIVERY_SECONDS.observe(answer.seconds)
        if answer.delivered:
            delivery = {
                "delivery_id": row.delivery_id,
                "new_attempts": attempts,
                "new_last_attempt_at": sent_at,
                "new_last_http_status": answer.http_status,
            }
        else:
            delivery = {
                "delivery_id": row.delivery_id,
                "new_status": status,
                "new_attempts": attempts,
                "new_next_attempt_at": next_attempt_at,
                "new_last_attempt_at": sent_at,
                "new_last_http_status": answer.http_status,
                "new_last_error": reason[:64],
                "new_completed_at": completed_at,
            }
        return _Outcome(
            delivered=answer.delivered,
            delivery=delivery,
            attempt={
                "endpoint_id": turn.endpoint.id,
                "event_id": row.id,
                "attempt": attempts,
                "attempted_at": sent_at,
                "outcome": outcome,
                "http_status": answer.http_status,
                "error_code": error.code if error else None,
                "error": error.message[:2000] if error else None,
                "latency_ms": round(answer.seconds * 1000),
                "response_body": answer.body,
            },
        )

    def _count_failure(self, turn: _Turn, answer: Answer, sent_at: datetime) -> None:
        turn.consecutive_failures += 1
        turn.failing_since = turn.failing_since or sent_at
        if answer.http_status == 410:
            turn.disabled_reason = "The endpoint answered 410 Gone."
        elif sent_at - turn.failing_since >= self._disable_after:
            turn.disabled_reason = (
                f"Every attempt failed for {self.settings.disable_after_hours:g} hours "
                f"(since {turn.failing_since.isoformat()})."
            )
        elif turn.consecutive_failures >= PAUSE_AFTER or answer.http_status is None:
            # No answer at all (a timeout, a refused connection) is a host that is down: paused at once.
            step = min(max(0, turn.consecutive_failures - PAUSE_AFTER), len(self._schedule) - 1)
            turn.paused_until = sent_at + timedelta(seconds=jittered(self._schedule[step]))

    def _record(self, turn: _Turn, outcomes: list[_Outcome], health: _Health) -> None:
        """The outcomes, their attempts and the endpoint's health as it was after them."""
        if not outcomes:
            return
        endpoint = turn.endpoint
        values = {
            "endpoint_id": endpoint.id,
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
            conn.execute(HEALTH, values)
            if health.disabled_reason is not None:
                current = SimpleNamespace(**{**endpoint._asdict(), "failing_since": health.failing_since})
                disable(conn, current, health.disabled_reason, datetime.now(UTC), announce=True)

        # Committed together with what the other delivery and download threads record at the moment.
        self.db.group_commit.run(record)

    def _release(self, turn: _Turn) -> None:
        with self.db.writing(durable=False) as conn:
            conn.execute(RELEASE, {"endpoint_id": turn.endpoint.id, "token": turn.token})

    def _ask_for_next_turn(self, turn: _Turn) -> None:
        """After the release, so that work arriving while the turn ran (whose own task found the
        endpoint claimed) is seen here."""
        endpoint = turn.endpoint
        if turn.disabled_reason is not None:
            metrics.DELIVERY_BACKLOG_AGE.labels(endpoint.id).set(0)
            return
        now = datetime.now(UTC)
        next_due, oldest = self._pending(endpoint.id, endpoint.tenant_id, turn.position)
        self._observe_backlog(endpoint.id, oldest, now)
        paused = turn.paused(now)
        if turn.cut_short and not paused:
            self._enqueue([endpoint.id], None)
        elif next_due is not None:
            due = max(next_due, turn.paused_until) if paused and turn.paused_until else next_due
            self._enqueue([endpoint.id], None if due <= now else due)

    def _pending(self, endpoint_id: str, tenant_id: str, position: int) -> tuple[datetime | None, datetime | None]:
        """When the endpoint's next work is due (None: nothing to do), and the time of its oldest
        undelivered event."""
        with self.db.reading() as session:
            due, oldest = session.execute(PENDING_SUMMARY, {"endpoint_id": endpoint_id}).one()
            first_new = session.scalar(FIRST_NEW_EVENT, {"tenant_id": tenant_id, "position": position})
        if first_new is not None:
            due, oldest = datetime.now(UTC), min(oldest or first_new, first_new)
        return due, oldest

    @staticmethod
    def _observe_backlog(endpoint_id: str, oldest: datetime | None, now: datetime) -> None:
        age = (now - oldest).total_seconds() if oldest else 0.0
        metrics.DELIVERY_BACKLOG_AGE.labels(endpoint_id).set(max(0.0, age))

    # Waking endpoints ----------------------------------------------------------------------------
    def wake_for_new_events(self, seen: int | None) -> int:
        """Ask for turns for the endpoints of events added to the feed after id `seen`; returns the id to
        pass next time. (Called every delivery.poll_interval_seconds by one thread per worker host; the
        first call only finds where the feed ends.)"""
        with self.db.reading() as session:
            head = session.scalar(FEED_HEAD) or 0
            if seen is None or head <= seen:
                return head if seen is None else seen
            kinds: dict[str, set[str]] = {}
            for tenant_id, event_type in session.execute(NEW_EVENT_KINDS, {"after": seen, "head": head}):
                kinds.setdefault(tenant_id, set()).add(event_type)
            endpoints = session.execute(WAKEABLE_ENDPOINTS, {"tenants": sorted(kinds), "now": datetime.now(UTC)}).all()
        wanted = [e.id for e in endpoints if not e.event_types or kinds[e.tenant_id] & set(e.event_types)]
        if wanted:
            self._enqueue(wanted, None)
        return head

    def sweep(self, grace: timedelta = SWEEP_GRACE) -> int:
        """Ask for turns for the endpoints that have work no task may be on its way for (a lost
        enqueue, a killed worker, a restart): work that has waited longer than `grace` (0 when a worker
        starts: nothing is on its way then). Updates every endpoint's backlog age. Returns how many
        endpoints were woken."""
        now = datetime.now(UTC)
        with self.db.reading() as session:
            ids = list(session.scalars(SWEEP, {"now": now, "overdue": now - grace}))
            enabled = session.execute(ENABLED_ENDPOINTS).all()
        if ids:
            self._enqueue(ids, None)
            log(logger, "delivery_sweep", endpoints=len(ids))
        for endpoint in enabled:
            _, oldest = self._pending(endpoint.id, endpoint.tenant_id, endpoint.feed_position)
            self._observe_backlog(endpoint.id, oldest, now)
        return len(ids)


class _RefusedSession:
    """An endpoint whose URL the rules refuse now: every attempt fails with the same error."""

    def __init__(self, error: OutboundError):
        self._error = error

    def post(self, body: bytes, headers: dict[str, str]) -> Answer:
        return Answer(None, self._error, 0.0, None)

    def close(self) -> None:
        pass


@functools.cache
def _attempts_counter(outcome: str, reason: str) -> Any:
    """The counter of one outcome and reason (few of each), looked up once: labels() takes a lock and
    hashes its arguments on every call."""
    return metrics.DELIVERY_ATTEMPTS.labels(outcome, reason)


def _reason_label(answer: Answer) -> str:
    """A bounded label for metrics: the error's code, or the HTTP status class (5xx...)."""
    if answer.error is not None:
        return answer.error.code
    return f"http_{str(answer.http_status)[0]}xx"
