"""Delivering the event feed to endpoints: the worker's side of push delivery.

The feed is the outbox. Work is done in *turns*, one endpoint per turn, on the queue's worker threads
(any number of them, in any number of processes and hosts). A turn claims the endpoint (a lease and a
token, as attachments have), so no two workers ever deliver to one endpoint at the same time, then, until
nothing is due or its time (delivery.turn_seconds) is up:

1. takes the tenant's events after the endpoint's place in the feed, a batch at a time, makes a pending
   delivery for each event of the endpoint's types, and moves its place past them (one transaction),
   then reads the due deliveries with their bodies (books.py, payloads.py);
2. delivers them one after the other in feed order, over one kept connection, paced by the endpoint's
   rate limit, each signed with the endpoint's active secrets (sender.py, signing.py), reading the
   endpoint again at most every delivery.endpoint_check_seconds: once its owner has disabled, deleted or
   changed it (or another worker has taken it over), the turn ends and what is left waits for a turn of
   the endpoint as it is now;
3. records the outcomes, the attempts and the endpoint's health in one transaction (books.py), before the
   batch counts as done.

From a turn's first full batch or its second one on, reading the next batch and recording the last one
happen while the current one is sent (_Overlap), so the database work overlaps the sending: in the worker
process's books process when it has one (books_process.py: another CPU, no contention for the GIL), on a
thread of the turn's own otherwise.

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
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

import sqlalchemy as sa

from webhook_service.config.model import DeliverySettings
from webhook_service.database import feed
from webhook_service.database.engine import Database
from webhook_service.database.tables import DELIVERIES, ENDPOINTS, EVENTS
from webhook_service.delivery import history
from webhook_service.delivery.books import HELD, Batch, Due, Health, LostClaim, Outcome, Place, TurnBooks
from webhook_service.delivery.books_process import BooksProcess
from webhook_service.delivery.endpoint_secrets import EndpointSecrets, SecretUnreadable
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


@dataclass
class _Turn:
    endpoint: Row  # as claimed
    signer: Signer  # with the endpoint's secrets, opened
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
    changed: bool = False  # stopped because the endpoint is no longer as claimed (_changed_since_claim)
    checked_at: float = field(default_factory=time.monotonic)  # when it was last read as claimed
    outcomes: dict[str, int] = field(default_factory=dict)
    books: _Overlap | None = None  # where its database work runs

    def health(self) -> Health:
        return Health(self.failing_since, self.consecutive_failures, self.paused_until, self.disabled_reason)

    def place(self) -> Place:
        endpoint = self.endpoint
        types = tuple(endpoint.event_types or ())
        return Place(endpoint.id, endpoint.tenant_id, types, self.token, self.position, self.cursor)

    def paused(self, now: datetime) -> bool:
        return self.paused_until is not None and self.paused_until > now

    def out_of_time(self) -> bool:
        if time.monotonic() >= self.ends_at:
            self.cut_short = True
        return self.cut_short


T = TypeVar("T")


class _Pending(Generic[T]):
    """Work handed to the books process: its result, or, if the process died meanwhile, `again()`'s (None:
    BrokenProcessPool, which ends the turn)."""

    def __init__(self, future: Future[T], process: BooksProcess, again: Callable[[], T] | None):
        self._future = future
        self._process = process
        self._again = again

    def result(self) -> T:
        try:
            return self._future.result()
        except BrokenProcessPool as error:
            self._process.lost(error)
            if self._again is None:
                raise
            return self._again()


class _Overlap:
    """Where a turn's database work (books.py) runs. A turn of one small batch (the usual one when
    traffic is light) does it inline. From a full batch or the second one on, the next batch is read and
    the last one recorded while this one is sent, so that neither waits for the other: in the worker's
    books process when it has one and that has started (books_process.py), on a thread of the turn's
    own otherwise."""

    def __init__(self, books: TurnBooks, process: BooksProcess | None):
        self._books = books
        self._process = process
        self._thread: ThreadPoolExecutor | None = None
        self.ran: set[str] = set()  # where its work ran: inline, thread, process (the turn's log says)

    @property
    def started(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        if self._thread is None:
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="delivery-books")

    def next_batch(self, place: Place) -> _Pending[Batch] | Future[Batch]:
        process = self._elsewhere()
        if process is not None:
            try:
                # Taking new events again is harmless (the place only moves forward, and a delivery made
                # twice is made once), so a batch lost with the process is read again here.
                return _Pending(process.next_batch(place), process, lambda: self._books.next_batch(place))
            except BrokenProcessPool as error:
                process.lost(error)
        return self._run(self._books.next_batch, place)

    def record(self, endpoint: Row, outcomes: list[Outcome], health: Health) -> _Pending[None] | Future[None]:
        process = self._elsewhere()
        if process is not None:
            try:
                # Whether a record lost with the process was committed is not known: not made again.
                return _Pending(process.record(endpoint, outcomes, health), process, None)
            except BrokenProcessPool as error:
                process.lost(error)  # refused before it was handed over: made here instead
        return self._run(self._books.record, endpoint, outcomes, health)

    def close(self) -> None:
        if self._thread is not None:
            self._thread.shutdown(wait=True)

    def _elsewhere(self) -> BooksProcess | None:
        if self._thread is not None and self._process is not None and self._process.available():
            self.ran.add("process")
            return self._process
        return None

    def _run(self, function: Callable[..., T], *arguments: Any) -> Future[T]:
        self.ran.add("inline" if self._thread is None else "thread")
        if self._thread is not None:
            return self._thread.submit(function, *arguments)
        done: Future[T] = Future()
        try:
            done.set_result(function(*arguments))
        except BaseException as error:  # noqa: BLE001  # handed to whoever waits for the result, as the thread would
            done.set_exception(error)
        return done


_UNCLAIMED = sa.or_(ENDPOINTS.c.claimed_until.is_(None), ENDPOINTS.c.claimed_until < sa.bindparam("now"))
CLAIM = (
    sa.update(ENDPOINTS)
    .where(ENDPOINTS.c.id == sa.bindparam("endpoint_id"), ENDPOINTS.c.enabled.is_(True), _UNCLAIMED)
    .values(claimed_until=sa.bindparam("lease_until"), claim_token=sa.bindparam("token"))
    .returning(*ENDPOINTS.c)
)
RELEASE = sa.update(ENDPOINTS).where(HELD).values(claimed_until=None, claim_token=None)
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
        secrets: EndpointSecrets,
        attachment_url: AttachmentUrl,
        enqueue: Enqueue,
        resolver: Resolver | None = None,
    ):
        """`secrets` opens the endpoints' sealed signing secrets; `attachment_url` signs attachment URLs
        as the read API does; `enqueue` asks the queue for turns; `resolver` resolves endpoint hosts (None:
        the system's; tests substitute their own)."""
        self.db = db
        self.settings = settings
        self._secrets = secrets
        self.books = TurnBooks(db, settings, attachment_url)
        self._books_process: BooksProcess | None = None
        self._enqueue = enqueue
        self._connector = Connector(delivery_rules(settings), resolver, action="Delivering to")
        self._schedule = [float(wait) for wait in settings.retry_schedule_seconds]
        self._disable_after = timedelta(hours=settings.disable_after_hours)
        self._check_interval = settings.endpoint_check_seconds
        self._lease = timedelta(seconds=settings.turn_seconds + settings.timeout_seconds + _LEASE_MARGIN_SECONDS)
        # When this process last sent to each endpoint: the rate limit's pace across its turns here.
        self._last_sent: dict[str, float] = {}

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
        except LostClaim:
            # Taken over by another worker (the lease ran out), or disabled or deleted meanwhile.
            log(logger, "delivery_turn_ended", endpoint_id=endpoint_id, reason="claim_lost_or_disabled")
            self._release(turn)
            return turn.outcomes
        except _EndpointChanged:
            # Its owner disabled, deleted or changed it during the turn (or it was taken over): the batch
            # sent so far is recorded, and what is left waits for a turn of the endpoint as it is now (none
            # if it is disabled or gone).
            log(logger, "delivery_turn_ended", endpoint_id=endpoint_id, reason="endpoint_changed")
            self._release(turn)
            self._enqueue([endpoint_id], None)
            return turn.outcomes
        except BrokenProcessPool:
            # The books process died with a batch's record in hand. Committed or not, none of it is in
            # flight any more: what was not recorded is still pending, and is sent again (at least once).
            log(logger, "delivery_turn_ended", logging.WARNING, endpoint_id=endpoint_id, reason="books_process_lost")
            self._release(turn)
            self._enqueue([endpoint_id], None)
            return turn.outcomes
        except Exception:  # noqa: BLE001  # any error: the endpoint must not stay held
            # The batch could not be read or recorded (the database refused a row, or went away): the
            # endpoint is released at once rather than held for the rest of the lease. No turn is asked
            # for: the deliveries stay as they were (pending, due) and the sweep, once a minute, wakes the
            # endpoint again, so an error that repeats costs one batch a minute, never a loop of immediate
            # resends; the batches that were recorded count towards the endpoint's pause and disabling.
            log(logger, "delivery_turn_failed", logging.ERROR, exc_info=True, endpoint_id=endpoint_id)
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
                books=sorted(turn.books.ran) if turn.books else [],
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
        books = turn.books = _Overlap(self.books, self._books_process)
        try:
            batch = books.next_batch(turn.place())
            recorded: _Pending[None] | Future[None] | None = None
            while True:
                taken = batch.result()
                turn.position, due = taken.position, taken.due
                prefetched = False
                if due:
                    turn.cursor = due[-1].id
                    if len(due) == self.settings.batch_size or turn.outcomes:
                        books.start()  # a full batch, or a second one: more is likely to follow
                    if books.started:
                        batch, prefetched = books.next_batch(turn.place()), True
                    outcomes = self._send(turn, session, due, taken.bodies)
                    if recorded is not None:
                        recorded.result()
                    recorded = books.record(turn.endpoint, outcomes, turn.health())
                if (
                    turn.changed
                    or turn.disabled_reason is not None
                    or turn.paused(datetime.now(UTC))
                    or turn.out_of_time()
                    or (not due and taken.caught_up)
                ):
                    break
                if not prefetched:
                    batch = books.next_batch(turn.place())
            if recorded is not None:
                recorded.result()
        finally:
            books.close()
        if turn.changed:
            raise _EndpointChanged()

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
        try:
            signer = self._signer(endpoint)
        except SecretUnreadable as error:
            # Nothing can be signed: its deliveries wait, pending, until the key or the secret is set right.
            log(
                logger,
                "endpoint_secret_unreadable",
                logging.ERROR,
                endpoint_id=endpoint.id,
                tenant=endpoint.tenant_id,
                reason=str(error),
            )
            with self.db.writing(durable=False) as conn:
                conn.execute(RELEASE, {"endpoint_id": endpoint.id, "token": token})
            return None
        return _Turn(
            endpoint=endpoint,
            signer=signer,
            token=token,
            ends_at=time.monotonic() + self.settings.turn_seconds,
            position=endpoint.feed_position,
            failing_since=endpoint.failing_since,
            consecutive_failures=endpoint.consecutive_failures,
            paused_until=endpoint.paused_until,
        )

    def _signer(self, endpoint: Row) -> Signer:
        previous = endpoint.previous_secret
        return Signer(
            self._secrets.open(endpoint.id, endpoint.secret),
            None if previous is None else self._secrets.open(endpoint.id, previous),
            endpoint.previous_secret_expires_at,
        )

    def _send(
        self, turn: _Turn, session: EndpointSession | _RefusedSession, due: Sequence[Due], bodies: dict[int, bytes]
    ) -> list[Outcome]:
        """Attempt the due deliveries in order until the endpoint is paused or disabled or the turn's
        time is up; the outcomes, to record."""
        outcomes: list[Outcome] = []
        endpoint = turn.endpoint
        for row in due:
            # The turn's first attempt goes out however long the database took to hand it over: on a
            # machine slow enough that reading a batch outlasts turn_seconds, every turn still moves its
            # endpoint on by one (the lease leaves a minute for that). Its time is checked between attempts.
            if (turn.outcomes and turn.out_of_time()) or (
                turn.paused_until is not None and turn.paused(datetime.now(UTC))
            ):
                break
            body = bodies.get(row.id)
            if body is None:
                continue  # the event left the feed since the batch was read, its deliveries with it
            self._pace(endpoint)
            if self._changed_since_claim(turn):
                turn.changed = True
                break
            sent_at = datetime.now(UTC)
            # Counted from the moment recorded as the attempt's, so the next one is recorded at least an
            # interval later (counted from before it, a thread held up in between sent early by as much).
            self._last_sent[endpoint.id] = time.monotonic()
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

    def _changed_since_claim(self, turn: _Turn) -> bool:
        """Whether the endpoint is no longer as the turn claimed it, read at most every
        endpoint_check_seconds. A read before every POST (tried: a round trip or three each) took the
        worker from the plain loop's pace to a third of it; this bounds what a change leaves going to the
        old URL to that interval and the POST in flight when it was made."""
        now = time.monotonic()
        if now - turn.checked_at < self._check_interval:
            return False
        turn.checked_at = now
        return not self.books.still_as_claimed(turn.endpoint)

    def _pace(self, endpoint: Row) -> None:
        """Wait as long as the endpoint's rate limit asks since the last delivery to it."""
        if not endpoint.rate_limit_per_second:
            return
        interval = 1.0 / endpoint.rate_limit_per_second
        wait = self._last_sent.get(endpoint.id, 0.0) + interval - time.monotonic()
        if wait > 0:
            time.sleep(wait)

    def _judge(self, turn: _Turn, row: Due, answer: Answer, sent_at: datetime) -> Outcome:
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
        return Outcome(
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
            left = history.work_left(session, endpoint_id, tenant_id, position)
        return left.next_due, left.oldest

    @staticmethod
    def _observe_backlog(endpoint_id: str, oldest: datetime | None, now: datetime) -> None:
        age = (now - oldest).total_seconds() if oldest else 0.0
        metrics.DELIVERY_BACKLOG_AGE.labels(endpoint_id).set(max(0.0, age))

    def start_books_process(self, on_lost: Callable[[], None] | None = None) -> None:
        """Give this process's turns a books process (books_process.py). Call while it has no other
        thread: a worker's consumer process, as it starts. `on_lost` is called if that process dies."""
        if self._books_process is None:
            self._books_process = BooksProcess(self.books, on_lost)

    def close(self) -> None:
        """Stop the books process, if one was started."""
        if self._books_process is not None:
            self._books_process.close()

    # Waking endpoints ----------------------------------------------------------------------------
    def wake_for_new_events(self, seen: int | None) -> int:
        """Ask for turns for the endpoints of events added to the feed after id `seen`; returns the id to
        pass next time. (Called every delivery.poll_interval_seconds by one thread per worker host; the
        first call only finds where the feed ends.)"""
        with self.db.reading() as session:
            head = feed.head(session)
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


class _EndpointChanged(Exception):
    """The endpoint is no longer as the turn claimed it: the turn ends, what it sent recorded."""


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
