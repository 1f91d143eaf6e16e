"""The worker's delivery books process (delivery/books_process.py), in the real `webhook-service worker`
(one consumer process, which forks it as it starts): a backlog reaches the endpoint in feed order, each
event once, its batches read and recorded in that process; if the process dies mid-backlog nothing is
lost (what was not recorded is sent again) and the consumer starts over, gracefully, with a new one; and the
process never outlives its worker."""

from __future__ import annotations

import os
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.delivery.receiver import Receiver, payload_of
from tests.fixtures.app import TENANT_A
from tests.support.worker_process import WorkerUnderTest
from webhook_service.database.tables import DELIVERIES
from webhook_service.intake.message_store import RawRequestRecord, store_webhook
from webhook_service.model.events import MessageEvent
from webhook_service.runtime import Runtime
from webhook_service.settings import load_settings

pytestmark = pytest.mark.slow

SECRET = "whsec_" + "Qk9PS1NCT09LU0JPT0tTQk9PS1NCT09LU0JPT0tT"
BATCH = 40


@pytest.fixture
def worker_config(tmp_path: Path, database_url: str, receiver: Receiver) -> Path:
    config = tmp_path / "worker.toml"
    config.write_text(f"""
data_dir = "{tmp_path / "data"}"
database_url = "{database_url}"
log_level = "INFO"
[queue]
worker_threads = 2
[delivery]
allow_http = true
allow_private_networks = ["127.0.0.0/8"]
batch_size = {BATCH}
timeout_seconds = 2
retry_schedule_seconds = [0.2, 0.2]
poll_interval_seconds = 0.05
[[delivery.endpoints]]
tenant = "{TENANT_A}"
name = "books"
url = "{receiver.url("/books", host="127.0.0.1")}"
secret = "{SECRET}"
[[tenants]]
id = "{TENANT_A}"
[[connections]]
provider = "standard"
name = "open"
tenant = "{TENANT_A}"
verify = false
""")
    return config


@pytest.fixture
def backlog(worker_config: Path, receiver: Receiver):
    """`backlog(count)`: that many inbound messages in the feed for the declared endpoint, which the
    receiver verifies; returns their provider message ids in feed order."""
    runtime = Runtime(load_settings(worker_config, environ={}))
    # Declared before the messages: a new endpoint starts at the end of the feed.
    runtime.endpoints.sync_declared(runtime.settings.delivery.endpoints)
    receiver.expect("/books", SECRET)

    def make(count: int) -> list[str]:
        connection = runtime.connections.find("standard", "open")
        names = [f"books-{index}" for index in range(count)]
        for start in range(0, count, 50):
            raw = RawRequestRecord(
                "books", "POST", "http://test/webhooks/standard/open", [], b"{}", None, datetime.now(UTC)
            )
            events = [
                MessageEvent(name, "inbound", "+15550001111", ("+15551234567",), text=f"backlog \U0001f4e6 {name}")
                for name in names[start : start + 50]
            ]
            store_webhook(runtime.db, connection, raw, list(events), "US")
        return names

    yield make
    runtime.close()


def received_in_order(receiver: Receiver) -> list[str]:
    """The provider message id of each verified delivery, in the order they arrived."""
    return [payload_of(r)["data"]["providerMessageId"] for r in receiver.requests("/books")]


def wait_for_distinct(receiver: Receiver, count: int, timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    while len(set(received_in_order(receiver))) < count:
        assert time.monotonic() < deadline, f"{len(set(received_in_order(receiver)))} of {count} delivered"
        time.sleep(0.1)
    return received_in_order(receiver)


def books_process(worker: WorkerUnderTest) -> int:
    started = worker.wait_for("delivery_books_process_started")[0]
    assert worker.children() == [started["pid"]]
    return int(started["pid"])


def test_a_backlog_is_delivered_in_feed_order_once_each_with_its_books_in_the_process(worker_config, backlog, receiver):
    names = backlog(6 * BATCH + 7)
    worker = WorkerUnderTest(worker_config, "--processes", "1")
    try:
        child = books_process(worker)
        arrived = wait_for_distinct(receiver, len(names), timeout=60)
        assert arrived == names  # in feed order, none twice
        turns = worker.wait_for("delivery_turn")
        assert any("process" in turn["books"] for turn in turns), turns
        assert worker.events("delivery_books_process_lost") == []
        assert worker.stop(signal.SIGTERM) == 0
        assert not Path(f"/proc/{child}").exists() or _zombie(child)
    finally:
        worker.close()


# A process's death, the same on either database (the books' own tests run on both): on one of them, to
# keep the suite's time.
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_books_process_killed_mid_backlog_loses_nothing_and_the_consumer_starts_over_with_a_new_one(
    worker_config, backlog, receiver, database_url
):
    names = backlog(8 * BATCH)
    receiver.answer("/books", 204, delay=0.01)  # slow enough to be caught mid-backlog
    worker = WorkerUnderTest(worker_config, "--processes", "1")
    try:
        child = books_process(worker)
        wait_for_distinct(receiver, BATCH + 5, timeout=60)
        os.kill(child, signal.SIGKILL)
        arrived = wait_for_distinct(receiver, len(names), timeout=90)
        worker.wait_for("delivery_books_process_lost")
        # At least once: every event arrived; one sent again came after the ones sent first (the batch
        # whose record was lost), and while the endpoint answered, the first arrivals kept feed order.
        assert set(arrived) == set(names)
        first_seen = list(dict.fromkeys(arrived))
        assert first_seen == names
        # The consumer finished what it was running and started over in the same process (as on SIGHUP),
        # which forked a new books process.
        assert worker.wait_for("worker_process_starting_over")[0]["reason"] == "delivery_books_process_lost"
        started = worker.wait_for("delivery_books_process_started", count=2, timeout=60)
        assert started[1]["pid"] != child and Path(f"/proc/{started[1]['pid']}").exists()
        assert worker.process.poll() is None
        assert worker.wait_for("consumer started", count=2)
    finally:
        worker.close()
    runtime = Runtime(load_settings(worker_config, environ={}))
    try:
        with runtime.db.reading() as session:
            statuses = dict(
                session.execute(sa.select(DELIVERIES.c.status, sa.func.count()).group_by(DELIVERIES.c.status)).all()
            )
        assert statuses == {"delivered": len(names)}
    finally:
        runtime.close()


def test_the_books_process_ends_soon_after_its_worker_is_killed(worker_config, backlog):
    backlog(1)
    worker = WorkerUnderTest(worker_config, "--processes", "1")
    try:
        child = books_process(worker)
        os.kill(worker.process.pid, signal.SIGKILL)  # the worker alone, not its process group
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child}").exists() and not _zombie(child):
            assert time.monotonic() < deadline, "the books process outlived its worker"
            time.sleep(0.1)
    finally:
        worker.close()


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
