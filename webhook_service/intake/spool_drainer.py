"""The spool's drainer: once the database answers again, it stores the spooled requests, oldest first,
through the intake's own path (`Intake.store_spooled`).

Every web and worker process runs one (a thread that looks at the spool every second); the spool's drain
lock lets one of them at a time work on a spool. Files are drained oldest first, each removed once all of
it is stored. Every few requests stored (or put in quarantine), the drainer notes its progress durably, so
a drainer killed at any moment resumes close to where it was: the requests it stored without noting so are
found stored and not stored again (the intake's idempotency: `raw_request_stored`, `Quarantine.holds`, and
the unique keys of messages and reports). Where progress cannot be noted (a full disk, a progress file an
earlier version left short), the drainer goes on from where it knows it got to, and still removes each
file it has stored to its end, which gives the disk its space back.

A damaged region (a record a crash cut off: never acknowledged) is set aside under the spool's damaged/
directory with a log line, and the drain goes on with the next good record, kept or not. A record that
checks out but that this version cannot read (one another version wrote) was acknowledged: the drain
passes it only once it is kept under damaged/, and waits at it while it cannot be (a full disk). While the
database still cannot be reached the drain stops where it is and tries again a second later.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from webhook_service.intake.processing import Intake
from webhook_service.intake.spool import RequestSpool, SpoolStatus, SpoolView
from webhook_service.intake.spool_format import Damage, Frame, decode
from webhook_service.observability.logs import log

logger = logging.getLogger("webhook_service.intake")

DRAIN_INTERVAL_SECONDS = 1.0
# Progress is noted (fsynced) after this many records: a drainer killed in between stores at most as
# many again, which the intake finds stored already (one indexed read each).
NOTE_PROGRESS_EVERY = 16
# While requests wait in the spool, a line says how many and for how long, this often.
STATUS_LOG_SECONDS = 30.0


@dataclass
class DrainReport:
    """What one drain did: requests stored, by outcome, and damaged regions set aside."""

    outcomes: dict[str, int] = field(default_factory=dict)
    set_aside: int = 0
    finished: bool = False  # everything stored and the spool files removed

    def count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


class SpoolDrainer:
    def __init__(self, spool: RequestSpool, intake: Intake, *, interval: float = DRAIN_INTERVAL_SECONDS):
        self.spool = spool
        self.intake = intake
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._status_logged_at = float("-inf")  # the first pass that finds requests waiting says so
        # Where this drainer knows it got to (a file's generation and offset), should the progress file
        # not say so: it could not be written. Forgotten once the file is removed.
        self._stored_to: tuple[bytes, int] | None = None

    def start(self) -> None:
        """Drain in a thread of this process from now on (daemon: a process that ends mid-drain loses
        nothing, see above)."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="spool-drainer", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.spool.release_removed_files()
                if self.spool.files():
                    self.drain()
            except Exception:  # noqa: BLE001  # the thread must outlive any one failure; the next pass retries
                log(logger, "spool_drain_failed", logging.ERROR, exc_info=True)

    def drain(self) -> DrainReport | None:
        """Store what the spool holds, until it is empty or the database fails again. None when another
        drainer is at work on this spool."""
        if not self.spool.directory.is_dir():
            return DrainReport(finished=True)  # nothing was ever spooled here
        with self.spool.drain_turn() as mine:
            if not mine:
                return None
            report = DrainReport()
            started = time.monotonic()
            before = self.spool.status()
            while self._drain_oldest_file(report):
                pass
            after = self.spool.status()
            if report.outcomes or report.set_aside:
                log(
                    logger,
                    "spool_drained",
                    logging.INFO,
                    outcomes=report.outcomes,
                    set_aside=report.set_aside,
                    depth_before=before.depth,
                    depth=after.depth,
                    oldest_age_seconds=round(after.oldest_age_seconds(), 3),
                    duration_ms=round((time.monotonic() - started) * 1000, 2),
                )
            elif not report.finished:
                self._log_waiting(after)
            return report

    def _drain_oldest_file(self, report: DrainReport) -> bool:
        """One pass over the oldest spool file as far as complete writes go; True when there is more to do
        now (the file was stored to its end, and removed or appended to meanwhile)."""
        files = self.spool.files()
        if not files:
            report.finished = True
            return False
        with self.spool.view(files[0]) as view:
            if view is None:
                self.spool.clear_headless(files[0])
                return True
            start = max(self.spool.drained_to(view), self._known_position(view))
            if start < view.end and not self._drain_view(view, start, report):
                return False
            if self.spool.retire(view):
                self._stored_to = None
            return True

    def _known_position(self, view: SpoolView) -> int:
        if self._stored_to is None or self._stored_to[0] != view.generation:
            return view.start
        return self._stored_to[1]

    def _drain_view(self, view: SpoolView, start: int, report: DrainReport) -> bool:
        """Store the records of `view` from `start` on; True once all of them are, False when the drain
        stops at one (the database, or a record that cannot be kept yet)."""
        done, unnoted, noting = start, 0, True
        try:
            for item in view.scan(start, self.spool.largest_record):
                if isinstance(item, Damage):
                    kept = self.spool.set_aside(view, item)
                    log(
                        logger,
                        "spool_record_damaged",
                        logging.ERROR,
                        offset=item.offset,
                        bytes=item.end - item.offset,
                        kept_as=str(kept),
                    )
                    report.set_aside += 1
                else:
                    outcome = self._store(view, item)
                    if outcome is None:
                        return False  # the database is still away, or the record waits for room: retry later
                    report.count(outcome)
                done, unnoted = item.end, unnoted + 1
                self._stored_to = (view.generation, done)
                if unnoted == NOTE_PROGRESS_EVERY and noting:
                    noting, unnoted = self._note_progress(view.generation, done), 0
        finally:
            if unnoted and noting:
                self._note_progress(view.generation, done)
        return True

    def _note_progress(self, generation: bytes, offset: int) -> bool:
        """Note durably how far the drain got; False (with a log line) when that cannot be written: the
        drain goes on from what it knows, and removing the file once it is stored gives the space back."""
        try:
            self.spool.mark_drained(generation, offset)
        except OSError as error:
            log(logger, "spool_progress_unwritable", logging.WARNING, offset=offset, error=error.strerror or str(error))
            return False
        return True

    def _store(self, view: SpoolView, frame: Frame) -> str | None:
        """Store one record; its outcome, or None when it cannot be stored yet (the database does not take
        it, or it is one this version cannot read and it cannot be kept under damaged/ yet)."""
        try:
            spooled = decode(frame.payload)
        except ValueError as error:
            # A record that checks out was acknowledged (another version wrote it): passed only once a
            # copy of it is kept, and until then the drain waits here, as for the database.
            kept = self.spool.set_aside(view, Damage(frame.offset, frame.end))
            log(
                logger,
                "spool_record_unreadable",
                logging.ERROR,
                offset=frame.offset,
                kept_as=str(kept) if kept else None,
                drain_waits=kept is None,
                error=str(error),
            )
            return "unreadable" if kept else None
        result = self.intake.store_spooled(spooled)
        if result.status >= 500:
            return None
        log(
            logger,
            "spooled_request_stored",
            logging.INFO,
            request_id=spooled.record.request_id,
            provider=spooled.provider,
            connection=spooled.connection,
            outcome=result.outcome,
            reason=result.reason_code,
            message_ids=(result.store.message_ids[:10] if result.store else []),
            received_at=spooled.record.received_at.isoformat(),
        )
        return result.outcome

    def _log_waiting(self, status: SpoolStatus) -> None:
        now = time.monotonic()
        if status.depth and now - self._status_logged_at >= STATUS_LOG_SECONDS:
            self._status_logged_at = now
            log(
                logger,
                "spool_waiting",
                logging.WARNING,
                depth=status.depth,
                bytes=status.bytes,
                oldest_age_seconds=round(status.oldest_age_seconds(), 3),
            )
