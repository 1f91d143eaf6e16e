"""Turning a pending attachment into a stored, checked blob, or a precise reason why not.

claim -> safe fetch (to a temp file) -> sniff + validate (+ re-encode images) -> blob store -> record.

The database row is the truth; queue tasks only say "look at attachment X". A worker first claims the
row (a lease with a token), so two workers never process one attachment at the same time, and its
final write is conditional on still holding the claim. Transient failures (timeouts, 5xx, a 404 just
after the webhook, storage outages, scratch space that cannot be written) put the row back to pending
with a due time (exponential backoff with jitter); permanent ones end it `rejected`; an exhausted retry
budget ends it `failed`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import random
import shutil
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa

from storage import BlobStore, StorageError, StorageUnavailable, content_disposition, disposition_for
from webhook_service.config.connections import ConnectionDirectory
from webhook_service.config.model import Connection, MediaSettings
from webhook_service.database import feed
from webhook_service.database.engine import Database
from webhook_service.database.tables import ATTACHMENTS, MESSAGES, RAW_REQUESTS
from webhook_service.media import scratch
from webhook_service.media.fetcher import FetchError, FetchPolicy, Resolver, SafeFetcher
from webhook_service.media.validation import MediaPolicy, MediaRejected, check_media
from webhook_service.model.credentials import Credentials
from webhook_service.model.file_names import attachment_file_name
from webhook_service.model.message_json import attachment_json
from webhook_service.observability import metrics
from webhook_service.observability.logs import log
from webhook_service.observability.request_ids import request_id_bound

# A connection's credentials for one media URL (the provider adapter's media_credentials).
CredentialsFor = Callable[[Connection, str], "Credentials | None"]
# Enqueue attachment ids for the workers, now or at a due time.
Enqueue = Callable[[list[str], "datetime | None"], None]
# A claimed attachment's row (every column) and its message's (id, provider, connection, received_at,
# and the request id of the webhook that brought the message's content), as Core rows read by attribute. (Typed loosely: to a type checker `row.index` is the tuple method.)
Row = Any

logger = logging.getLogger("webhook_service.media")

# Overdue attachments the sweep takes per round trip: one short write transaction that marks them
# enqueued, then one enqueue call. Small enough that the transaction stays short (on SQLite it is the one
# writer's turn, which webhooks wait for: 1,000 rows held it 5 ms, median, on a 100,000-row backlog; 31 ms
# on PostgreSQL), large enough that the round trips cost little. A run goes on batch after batch until
# nothing is overdue...
SWEEP_BATCH = 1000
# ...or until this long has passed: runs start every minute, in a consumer thread that should go back to
# downloading, and the next run takes up where this one stopped. (About 13,000 attachments a second were
# enqueued on Redis, so one run takes an hour's outage at 100 messages a second, 360,000, in some 30 s.)
SWEEP_TIME_BUDGET_SECONDS = 45.0
# The reason code of a download or re-encode that could not write its scratch files (a full disk): kept
# apart from the blob store's storage_unavailable, as the cure is on the worker's own disk.
SCRATCH_SPACE_UNAVAILABLE = "scratch_space_unavailable"


class _Transient(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class _Permanent(_Transient):
    pass


def fetch_policy(media: MediaSettings) -> FetchPolicy:
    fetch = media.fetch
    return FetchPolicy(
        max_bytes=media.max_bytes,
        allow_http=fetch.allow_http,
        max_redirects=fetch.max_redirects,
        connect_timeout=fetch.connect_timeout,
        read_timeout=fetch.read_timeout,
        total_timeout=fetch.total_timeout,
        allow_private_hosts=frozenset(host.lower() for host in fetch.allow_private_hosts),
        allow_private_networks=tuple(ipaddress.ip_network(n, strict=False) for n in fetch.allow_private_networks),
        tls_ca_file=fetch.tls_ca_file,
    )


def blob_key(tenant_id: str, day: datetime, message_id: str, index: int) -> str:
    """Made by the service, never from a caller's file name."""
    return f"{tenant_id}/{day:%Y/%m/%d}/{message_id}/{index}"


def backoff_delay(attempt: int, base: float, ceiling: float) -> float:
    """Exponential in the attempt number, capped, with "equal jitter": half fixed, half random, so a
    burst of failures does not retry in lockstep yet never retries immediately."""
    delay = min(ceiling, base * (2 ** max(0, attempt - 1)))
    return delay / 2 + random.uniform(0, delay / 2)


# Statements built once (building them per call cost more than running them). Bound parameter names
# differ from column names, which SQLAlchemy reserves for the SET clause.
CLAIM = (
    sa.update(ATTACHMENTS)
    .where(
        ATTACHMENTS.c.id == sa.bindparam("attachment_id"),
        ATTACHMENTS.c.status == "pending",
        sa.or_(ATTACHMENTS.c.claimed_until.is_(None), ATTACHMENTS.c.claimed_until < sa.bindparam("now")),
        sa.or_(ATTACHMENTS.c.next_attempt_at.is_(None), ATTACHMENTS.c.next_attempt_at <= sa.bindparam("due_by")),
    )
    .values(
        claimed_until=sa.bindparam("lease_until"),
        claim_token=sa.bindparam("token"),
        attempts=ATTACHMENTS.c.attempts + 1,
        updated_at=sa.bindparam("now"),
    )
    .returning(*ATTACHMENTS.c)
)
# The message's raw request is the webhook that brought its content, and so its attachments (a later
# status report never replaces it); pruned after retention_days, it leaves the request id None.
CLAIMED_MESSAGE = (
    sa.select(
        MESSAGES.c.id, MESSAGES.c.provider, MESSAGES.c.connection, MESSAGES.c.received_at, RAW_REQUESTS.c.request_id
    )
    .select_from(MESSAGES.outerjoin(RAW_REQUESTS, RAW_REQUESTS.c.id == MESSAGES.c.raw_request_id))
    .where(MESSAGES.c.seq == sa.bindparam("seq"))
)
HELD_BY_CLAIM = sa.and_(
    ATTACHMENTS.c.id == sa.bindparam("attachment_id"), ATTACHMENTS.c.claim_token == sa.bindparam("token")
)
RELEASE_FOR_RETRY = (
    sa.update(ATTACHMENTS)
    .where(HELD_BY_CLAIM)
    .values(
        next_attempt_at=sa.bindparam("due"),
        claimed_until=None,
        claim_token=None,
        reason_code=sa.bindparam("code"),
        reason=sa.bindparam("reason"),
        updated_at=sa.bindparam("now"),
    )
)
# Two forms, as a stored attachment also gets its type, size, hash and key; both built here once
# rather than per outcome with .values(), whose new statement costs a cache-key walk on every call.
_FINISH_VALUES = ("status", "reason_code", "reason", "completed_at")
_STORED_VALUES = ("content_type", "size", "sha256", "blob_key")


def _finish_statement(columns: tuple[str, ...]) -> sa.Update:
    return (
        sa.update(ATTACHMENTS)
        .where(HELD_BY_CLAIM, ATTACHMENTS.c.status == "pending")
        .values(
            {name: sa.bindparam(f"new_{name}") for name in columns}
            | {
                "claimed_until": None,
                "claim_token": None,
                "next_attempt_at": None,
                "updated_at": sa.bindparam("new_completed_at"),
            }
        )
        .returning(*ATTACHMENTS.c)
    )


FINISH = _finish_statement(_FINISH_VALUES)
FINISH_STORED = _finish_statement(_FINISH_VALUES + _STORED_VALUES)
# Pending, due long ago (sweep_after_seconds) and not being worked on: its wake-up was lost.
_LOST = sa.and_(
    ATTACHMENTS.c.status == "pending",
    ATTACHMENTS.c.next_attempt_at <= sa.bindparam("overdue"),
    sa.or_(ATTACHMENTS.c.claimed_until.is_(None), ATTACHMENTS.c.claimed_until < sa.bindparam("now")),
)
# One batch of the sweep: the longest-lost first, locked (on PostgreSQL, skipping rows another host's
# sweep or a claim holds, so that concurrent sweeps take different rows; SQLite has one writer anyway)...
SWEEP_BATCH_IDS = (
    sa.select(ATTACHMENTS.c.id)
    .where(_LOST)
    .order_by(ATTACHMENTS.c.next_attempt_at)
    .limit(SWEEP_BATCH)
    .with_for_update(skip_locked=True)
)
# ...then marked due now as they are enqueued again, so that the next batch, and the next runs for
# sweep_after_seconds, leave them to the task just queued. (Two statements, not an UPDATE over a LIMIT
# subquery: PostgreSQL may run such a subquery again for each row, each time skipping the rows it has
# just updated, and so update far more than the batch.)
SWEEP_MARK = (
    sa.update(ATTACHMENTS)
    .where(ATTACHMENTS.c.id.in_(sa.bindparam("ids", expanding=True)))
    .values(next_attempt_at=sa.bindparam("now"), updated_at=sa.bindparam("now"))
)
RESET_FOR_RETRY = (
    sa.update(ATTACHMENTS)
    .where(ATTACHMENTS.c.id.in_(sa.bindparam("ids", expanding=True)), ATTACHMENTS.c.status.in_(("failed", "rejected")))
    .values(
        status="pending",
        attempts=0,
        next_attempt_at=sa.bindparam("now"),
        reason_code=None,
        reason=None,
        completed_at=None,
        claimed_until=None,
        claim_token=None,
        updated_at=sa.bindparam("now"),
    )
    .returning(ATTACHMENTS.c.id)
)


class AttachmentPipeline:
    def __init__(
        self,
        db: Database,
        blob_store: BlobStore,
        connections: ConnectionDirectory,
        *,
        media: MediaSettings,
        policy: MediaPolicy,
        credentials_for: Mapping[str, CredentialsFor],
        enqueue: Enqueue,
        work_dir: Path,
        resolver: Resolver | None = None,
    ):
        """`credentials_for` maps a provider name to its adapter's media_credentials; `enqueue` wakes the
        workers; `resolver` resolves media hosts (None: the system's; tests substitute their own)."""
        self.db = db
        self.blob_store = blob_store
        self.connections = connections
        self.media = media
        self.policy = policy
        self._credentials_for = credentials_for
        self._enqueue = enqueue
        self._work_dir = work_dir
        self._fetcher = SafeFetcher(fetch_policy(media), resolver=resolver)
        # Longer than any fetch can take, plus time to check and store the file.
        self._lease_seconds = media.fetch.total_timeout * 2 + 120

    # Processing -----------------------------------------------------------------------------------
    def process(self, attachment_id: str) -> str | None:
        """Work on one attachment if it is due and unclaimed. Returns the outcome (stored, rejected,
        retry, failed) or None when there was nothing to do."""
        started = time.monotonic()
        claim = self._claim(attachment_id)
        if claim is None:
            return None
        attachment, message, token = claim
        # Every line about this download carries the id of the webhook that caused it.
        with request_id_bound(message.request_id):
            return self._process_claimed(attachment, message, token, started)

    def _process_claimed(self, attachment: Row, message: Row, token: str, started: float) -> str:
        connection = self.connections.find(message.provider, message.connection)
        max_bytes = (connection.media_max_bytes if connection else None) or self.media.max_bytes
        reason = None
        try:
            stored = self._fetch_check_store(attachment, message, connection, max_bytes)
        except _Permanent as problem:
            reason = problem.code
            outcome = self._finish(attachment, message, token, "rejected", problem.code, problem.message)
        except _Transient as problem:
            reason = problem.code
            outcome = self._retry_or_fail(attachment, message, token, problem)
        else:
            outcome = self._finish(attachment, message, token, "stored", None, None, stored)
        metrics.ATTACHMENTS.labels(outcome, reason or "none").inc()
        metrics.ATTACHMENT_SECONDS.observe(time.monotonic() - started)
        log(
            logger,
            "attachment",
            logging.INFO if outcome in ("stored", "retry") else logging.WARNING,
            attachment_id=attachment.id,
            message_id=message.id,
            provider=message.provider,
            connection=message.connection,
            index=attachment.index,
            outcome=outcome,
            reason=reason,
            attempts=attachment.attempts,
            host=urlsplit(attachment.source_url).hostname,
            duration_ms=round((time.monotonic() - started) * 1000, 1),
        )
        return outcome

    def _fetch_check_store(
        self, attachment: Row, message: Row, connection: Connection | None, max_bytes: int
    ) -> dict[str, Any]:
        try:
            work = scratch.make_directory(self._work_dir, "attachment-")
            try:
                return self._fetch_check_store_in(work, attachment, message, connection, max_bytes)
            finally:
                shutil.rmtree(work, ignore_errors=True)
        except scratch.ScratchSpaceUnavailable as error:
            # This machine's disk, not the media: released for a retry with backoff like any outage, and
            # `failed` with this reason if the disk stays full past the retry budget.
            raise _Transient(SCRATCH_SPACE_UNAVAILABLE, str(error)) from None

    def _fetch_check_store_in(
        self, work: Path, attachment: Row, message: Row, connection: Connection | None, max_bytes: int
    ) -> dict[str, Any]:
        """Fetch, check and store, with `work` (removed by the caller) for the files in between."""
        credentials_for = self._credentials_for.get(message.provider)
        credentials = credentials_for(connection, attachment.source_url) if credentials_for and connection else None
        download = work / "download"
        try:
            with scratch.create(download) as sink:
                fetched = self._fetcher.fetch(attachment.source_url, sink, credentials=credentials, max_bytes=max_bytes)
        except FetchError as error:
            raise self._classify(error, message) from None
        try:
            checked = check_media(
                download,
                declared_content_type=attachment.declared_content_type,
                policy=self._policy_for(max_bytes),
                workdir=work,
                source_sha256=fetched.sha256,
            )
        except MediaRejected as rejection:
            raise _Permanent(rejection.code, rejection.message) from None
        key = blob_key(attachment.tenant_id, message.received_at, message.id, attachment.index)
        name = attachment_file_name(
            name=attachment.name, url=attachment.source_url, index=attachment.index, content_type=checked.content_type
        )
        disposition = content_disposition(disposition_for(checked.content_type), name)
        try:
            self.blob_store.put_file(
                key,
                checked.path,
                content_type=checked.content_type,
                metadata={"attachment_id": attachment.id, "message_id": message.id, "sha256": checked.sha256},
                content_disposition=disposition,
                consume=True,
            )
        except StorageUnavailable as error:
            raise _Transient("storage_unavailable", f"blob store unavailable: {error}") from None
        except StorageError as error:
            raise _Transient("storage_error", f"blob store refused the object: {error}") from None
        return {"content_type": checked.content_type, "size": checked.size, "sha256": checked.sha256, "blob_key": key}

    def _policy_for(self, max_bytes: int) -> MediaPolicy:
        """The configured policy, with a connection's own size limit when it has one."""
        if max_bytes == self.policy.max_bytes:
            return self.policy
        return dataclasses.replace(self.policy, max_bytes=max_bytes)

    def _classify(self, error: FetchError, message: Row) -> _Transient:
        age = (datetime.now(UTC) - message.received_at).total_seconds()
        if error.http_status == 404 and age < self.media.not_found_grace_seconds:
            # The provider may still be propagating the file (Twilio documents this): try again shortly.
            return _Transient("not_found_yet", error.message)
        if error.transient:
            return _Transient(error.code, error.message)
        return _Permanent(error.code, error.message)

    # Database steps --------------------------------------------------------------------------------
    def _claim(self, attachment_id: str) -> tuple[Row, Row, str] | None:
        now = datetime.now(UTC)
        token = str(uuid.uuid4())
        # Not durable: a claim lost in a crash of the machine is a lease that never happened, and the row
        # is still pending. Skipping the flush matters because, while other downloads write their files,
        # a flush waits for the disk and everyone else waits for the database.
        with self.db.writing(durable=False) as conn:
            claimed = conn.execute(
                CLAIM,
                {
                    "attachment_id": attachment_id,
                    "now": now,
                    "due_by": now + timedelta(seconds=1),
                    "lease_until": now + timedelta(seconds=self._lease_seconds),
                    "token": token,
                },
            ).first()
            if claimed is None:
                return None
            message = conn.execute(CLAIMED_MESSAGE, {"seq": claimed.message_seq}).one()
        return claimed, message, token

    def _retry_or_fail(self, attachment: Row, message: Row, token: str, problem: _Transient) -> str:
        media = self.media
        if attachment.attempts >= media.retry_max_attempts:
            return self._finish(
                attachment,
                message,
                token,
                "failed",
                problem.code,
                f"{problem.message} (gave up after {attachment.attempts} attempts)",
            )
        delay = backoff_delay(attachment.attempts, media.retry_base_delay_seconds, media.retry_max_delay_seconds)
        due = datetime.now(UTC) + timedelta(seconds=delay)
        parameters = {
            "attachment_id": attachment.id,
            "token": token,
            "due": due,
            "code": problem.code,
            "reason": problem.message[:2000],
            "now": datetime.now(UTC),
        }

        def release(conn: sa.Connection) -> None:
            conn.execute(RELEASE_FOR_RETRY, parameters)

        self.db.group_commit.run(release)
        self._enqueue([attachment.id], due)
        return "retry"

    def _finish(
        self,
        attachment: Row,
        message: Row,
        token: str,
        status: str,
        code: str | None,
        reason: str | None,
        stored: dict[str, Any] | None = None,
    ) -> str:
        now = datetime.now(UTC)
        values = dict(
            status=status, reason_code=code, reason=reason and reason[:2000], completed_at=now, **(stored or {})
        )
        parameters = {f"new_{name}": value for name, value in values.items()}
        parameters.update(attachment_id=attachment.id, token=token)
        statement = FINISH_STORED if stored else FINISH

        def record(conn: sa.Connection) -> str:
            row = conn.execute(statement, parameters).first()
            if row is None:
                return "lost_claim"  # the lease ran out and another worker took over; it will record the outcome
            data = attachment_json(row)
            data["messageId"] = message.id
            feed.append(
                conn,
                [
                    {
                        "tenant_id": attachment.tenant_id,
                        "type": f"attachment.{status}",
                        "message_id": message.id,
                        "attachment_id": attachment.id,
                        "created_at": now,
                        "data": data,
                    }
                ],
            )
            return status

        # Committed together with the outcomes other download threads are recording at the same moment:
        # one flush to disk for all of them.
        result: str = self.db.group_commit.run(record)
        return result

    # Sweep and operator retries --------------------------------------------------------------------
    def sweep(self, queued: int = 0) -> int:
        """Enqueue again the attachments whose wake-up was lost (a queue outage, a crashed worker, a
        restart), all of them, batch after batch, within SWEEP_TIME_BUDGET_SECONDS: an attachment is
        delayed by minutes, never lost, and a long outage's backlog is drained at the workers' pace.
        Returns how many were enqueued.

        `queued` is how many tasks wait in the queue now. From a batch on, the sweep leaves the queue
        alone: the workers have work, and what looks lost is most likely waiting in that queue (webhooks'
        own tasks, or an earlier run's); enqueueing it again would only pile copies on the backlog. The
        run after the queue drains below a batch takes up what is still pending."""
        metrics.QUEUE_WAITING.set(queued)
        if queued >= SWEEP_BATCH:
            metrics.SWEEP_RUNS.labels("deferred").inc()
            log(logger, "sweep_deferred", queued=queued)
            return 0
        started = time.monotonic()
        enqueued = batches = 0
        while True:
            ids = self._sweep_one_batch()
            if ids:
                # If this fails (the queue is down), the run ends here and the batch, marked but not
                # enqueued, looks lost again sweep_after_seconds later: a delay, never a loss.
                self._enqueue(ids, None)
                enqueued += len(ids)
                batches += 1
            done = len(ids) < SWEEP_BATCH
            if done or time.monotonic() - started >= SWEEP_TIME_BUDGET_SECONDS:
                break
        stopped = "done" if done else "time_budget"
        metrics.SWEEP_RUNS.labels(stopped).inc()
        metrics.SWEEP_ENQUEUED.inc(enqueued)
        if enqueued:
            log(
                logger,
                "sweep_enqueued",
                attachments=enqueued,
                batches=batches,
                queued=queued,
                stopped=stopped,
                duration_ms=round((time.monotonic() - started) * 1000, 1),
            )
        return enqueued

    def _sweep_one_batch(self) -> list[str]:
        now = datetime.now(UTC)
        parameters = {"now": now, "overdue": now - timedelta(seconds=self.media.sweep_after_seconds)}
        # Not durable: a mark lost in a crash only makes the rows look lost again, and a later run
        # enqueues them again.
        with self.db.writing(durable=False) as conn:
            ids = list(conn.scalars(SWEEP_BATCH_IDS, parameters))
            if ids:
                conn.execute(SWEEP_MARK, {"ids": ids, "now": now})
        return ids

    def retry(self, attachment_ids: list[str]) -> list[str]:
        """Put failed or rejected attachments back to pending with a fresh retry budget (operator action).
        Returns the ids that were reset."""
        with self.db.writing() as conn:
            reset = [row.id for row in conn.execute(RESET_FOR_RETRY, {"ids": attachment_ids, "now": datetime.now(UTC)})]
        if reset:
            self._enqueue(reset, None)
        return reset
