"""The spool's files: segments that each go once drained, so that what the budget refuses is bounded by
what waits (plus the drained part of one segment); the file earlier versions wrote, still drained after
an upgrade; and the reading of a spool past damage, which must not take time a request's body can make
long. `down` spools (its database cannot be reached), `runtime` drains: see tests/support/spool.py.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from tests.fixtures.app import TENANT_B
from tests.support.spool import drain, file_key, spool_files, spooled_request, v1_file, v1_record
from tests.support.standard import inbound_body, post_standard
from webhook_service.database.tables import Message
from webhook_service.intake.message_store import RawRequestRecord
from webhook_service.intake.spool import LEGACY_FILE
from webhook_service.intake.spool_format import (
    FILE_HEADER_BYTES,
    KEY_BYTES,
    LARGEST_HEAD_BYTES,
    RECORD_MAGIC,
    SpooledRequest,
    encode,
    largest_record,
)

BUDGET_BYTES = 1024 * 1024  # segments of 64 KiB


@pytest.fixture
def settings_overrides() -> dict:
    return {"spool_max_bytes": BUDGET_BYTES}


def _post(client, message_id: str, text: str = "hello") -> int:
    return post_standard(client, inbound_body(message_id, text=text)).status_code


def _stored_message_ids(runtime) -> list[str]:
    with runtime.db.reading() as session:
        return list(session.scalars(sa.select(Message.provider_message_id).order_by(Message.seq)))


class _AtStored(logging.Handler):
    """Runs `action` when the drainer has stored its `after`-th request: a moment in the middle of a
    drain, when the database could fail again, or a webhook arrive while it still fails for the web
    process."""

    def __init__(self, after: int, action: Callable[[], None]):
        super().__init__(logging.INFO)
        self.after, self.action, self.stored = after, action, 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == "spooled_request_stored":
            self.stored += 1
            if self.stored == self.after:
                self.action()


class TestSegments:
    def test_what_was_drained_stops_counting_against_the_budget_during_the_drain(self, down, runtime, caplog):
        """A spool filled to its budget, drained most of the way: a webhook that arrives then (the web
        process still finds the database down, or it fails again) is taken, because each drained segment
        is removed at once, and the budget counts no more than what waits and one segment."""
        caplog.set_level(logging.INFO, logger="webhook_service")
        spool = down.runtime.spool
        ids: list[str] = []
        while _post(down.client, message_id := f"m-budget-{len(ids)}", text="x" * 20_000) == 200:
            ids.append(message_id)
        assert len(ids) > 30
        files = spool_files(runtime)
        before = spool.status()
        assert before.depth == len(ids) and before.bytes == sum(path.stat().st_size for path in files)
        assert before.oldest_age_seconds() > 0 and not before.accepting
        record_bytes = (before.bytes - len(files) * FILE_HEADER_BYTES) // len(ids) + 16  # ids differ in length

        during: dict = {}

        def a_webhook_arrives() -> None:
            during["answer"] = _post(down.client, "m-during", text="x" * 20_000)
            during["status"] = spool.status()

        handler = _AtStored(len(ids) - 4, a_webhook_arrives)
        logging.getLogger("webhook_service.intake").addHandler(handler)
        try:
            report = drain(runtime)
        finally:
            logging.getLogger("webhook_service.intake").removeHandler(handler)
        assert during["answer"] == 200, "the spool refused a webhook as full while 4 waited"
        status = during["status"]
        # Depth counts from the progress the drainer last noted (every 16 requests).
        assert 5 <= status.depth <= 5 + 16 and status.accepting
        assert status.bytes <= spool.segment_bytes + status.depth * record_bytes + 8 * FILE_HEADER_BYTES
        # Everything stored, in the order it arrived, across the segments.
        assert len(files) > 8
        assert report.finished and report.outcomes == {"accepted": len(ids) + 1}
        assert _stored_message_ids(runtime) == [*ids, "m-during"]
        assert spool_files(runtime) == []

    def test_a_request_larger_than_a_segment_has_one_of_its_own(self, down, runtime):
        assert _post(down.client, "m-small-1") == 200
        assert _post(down.client, "m-large", text="x" * 100_000) == 200
        assert _post(down.client, "m-small-2") == 200
        sizes = [path.stat().st_size for path in spool_files(runtime)]
        assert len(sizes) == 3 and sizes[1] > runtime.spool.segment_bytes
        assert drain(runtime).finished
        assert _stored_message_ids(runtime) == ["m-small-1", "m-large", "m-small-2"]

    def test_the_files_an_earlier_version_wrote_drain_first_after_an_upgrade(self, down, runtime):
        """Earlier versions kept one file, requests.spool, then segments requests-<n>.spool, both of format
        1 (records checked by CRC). After an upgrade (or while old processes still append to them, during
        a rolling deploy) they are drained before this version's segments, which they precede, and never
        appended to: this version's records go to a segment of its own."""
        directory = runtime.settings.spool_dir
        directory.mkdir(parents=True)
        (directory / LEGACY_FILE).write_bytes(v1_file(v1_record(_spooled("m-old-1"))))
        v1_segment = directory / "requests-000000000007.spool"
        v1_segment.write_bytes(
            v1_file(v1_record(_spooled("m-old-2")), b"WSR1\0\0\0\x40 torn", v1_record(_spooled("m-old-3")))
        )
        assert _post(down.client, "m-new") == 200
        files = spool_files(runtime)
        assert files[:2] == [directory / LEGACY_FILE, v1_segment] and len(files) == 3
        assert files[2].name == "requests-v2-000000000001.spool"
        assert v1_segment.read_bytes().count(b"WSR1") == 3, "not appended to"
        assert runtime.spool.status().depth == 4

        report = drain(runtime)
        assert report.finished and report.outcomes == {"accepted": 4} and report.set_aside == 1
        assert _stored_message_ids(runtime) == ["m-old-1", "m-old-2", "m-old-3", "m-new"]
        assert spool_files(runtime) == []


def _spooled(message_id: str, **changes) -> SpooledRequest:
    return spooled_request(message_id, request_id=f"req-{message_id}", **changes)


class TestReadingPastDamage:
    @pytest.fixture
    def settings_overrides(self) -> dict:
        return {}

    def test_bodies_full_of_record_magic_do_not_make_recovery_slow(self, down, runtime):
        """A record a crash cut off, whose body is "WSR1" followed by a length of 7 MiB, a thousand times,
        in a spool of 8 MB: each of them was read and checksummed to 7 MiB on (seconds for this spool,
        hours for a large one). No record the service writes is that large, so none is read."""
        assert _post(down.client, "m-first") == 200
        adversarial = (RECORD_MAGIC + struct.pack(">I", 7 * 1024 * 1024)) * 1024
        torn = encode(spooled_request("m-torn", body=adversarial), file_key(spool_files(runtime)[-1]))
        with spool_files(runtime)[-1].open("ab") as spool_file:
            spool_file.write(torn[: len(torn) * 9 // 10])
        large = [f"m-large-{n}" for n in range(8)]
        for message_id in large:
            assert _post(down.client, message_id, text="x" * 1_000_000) == 200

        started = time.monotonic()
        status = runtime.spool.status()  # reads the whole spool, past the damage
        assert time.monotonic() - started < 1.0
        assert status.depth == 9
        report = drain(runtime)
        assert report.outcomes == {"accepted": 9} and report.set_aside == 1
        assert _stored_message_ids(runtime) == ["m-first", *large]

    def test_a_record_crafted_inside_a_body_is_not_read_past_a_tear(self, down, runtime):
        """A sender verified for its own connection (tenant A's) sends a body that holds a whole record of
        its own, framed as format 1 framed them (a CRC is no secret) and as format 2 does but under a key
        it had to guess, naming tenant B's connection. A crash cuts the write off right after it. Past the
        tear the reader looks for the next record: the crafted ones must not be it. They are set aside
        with the rest of the damage, and tenant B gets no message."""
        assert _post(down.client, "m-before") == 200
        crafted_request = spooled_request("m-forged", request_id="forged")
        crafted = v1_record(replace(crafted_request, connection="other", tenant=TENANT_B))
        guessed = encode(replace(crafted_request, connection="other", tenant=TENANT_B), bytes(KEY_BYTES))
        carrier = encode(
            spooled_request("m-carrier", body=b'{"x": "' + crafted + guessed + b'"}'),
            file_key(spool_files(runtime)[-1]),
        )
        torn = carrier[: carrier.index(guessed) + len(guessed)]  # the crash: right after the crafted records
        with spool_files(runtime)[-1].open("ab") as spool_file:
            spool_file.write(torn)
        assert _post(down.client, "m-after") == 200

        report = drain(runtime)
        assert report.outcomes == {"accepted": 2} and report.set_aside == 1 and report.finished
        assert _stored_message_ids(runtime) == ["m-before", "m-after"]
        with runtime.db.reading() as session:
            assert (
                session.scalar(sa.select(sa.func.count()).select_from(Message).where(Message.tenant_id == TENANT_B))
                == 0
            )
        [kept] = (runtime.settings.spool_dir / "damaged").iterdir()
        assert kept.read_bytes() == torn

    def test_no_request_the_web_server_takes_makes_a_larger_record(self):
        """The bound holds for the largest request gunicorn's default limits let in: a request line and
        100 header fields at their limits, every character one that JSON writes as six, and the largest
        body."""
        cap = 1024 * 1024
        field = 8190 - 2  # "name: value" within the field limit
        headers = [[f"X-{n:03}", "\x80" * (field - 7)] for n in range(100)]
        record = RawRequestRecord(
            request_id="r" * 64,
            method="POST",
            url="https://public.example/webhooks/standard/main?" + "\x80" * 4094,
            headers=headers,
            body=b"x" * cap,
            remote_addr="2001:db8::1",
            received_at=datetime.now(UTC),
        )
        spooled = SpooledRequest("standard", "main", "t" * 64, record, datetime.now(UTC))
        assert len(encode(spooled, bytes(KEY_BYTES))) <= largest_record(cap)
        assert LARGEST_HEAD_BYTES > 100 * 8190
