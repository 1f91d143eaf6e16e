"""The queue is only a trigger: while Redis is frozen (stopped with SIGSTOP: connections are accepted,
nothing is answered) or gone, a webhook with attachments is still answered at once, and the sweep
enqueues its attachments once Redis is back. Each test runs a Redis of its own, never the shared one."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import redis
import sqlalchemy as sa

from tests.fixtures.services import free_port, service_unavailable
from tests.support.standard import inbound_body, post_standard
from webhook_service.database.tables import Attachment

# Ten: were each enqueue given its own 0.25 s, a webhook would take 2.5 s with Redis frozen.
ATTACHMENTS = [{"url": f"https://media.test/{index}.png"} for index in range(10)]


@dataclass
class PrivateRedis:
    url: str
    process: subprocess.Popen

    def freeze(self) -> None:
        os.kill(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    binary = shutil.which("redis-server")
    if binary is None:
        service_unavailable("redis-server", "not found on PATH")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = PrivateRedis(f"redis://127.0.0.1:{port}/0", process)
    client = redis.Redis.from_url(server.url, socket_timeout=1)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail(f"redis-server on port {port} did not start")
            time.sleep(0.05)
    client.close()
    try:
        yield server
    finally:
        if process.poll() is None:
            server.thaw()  # a stopped process does not act on SIGTERM until it runs again
            process.terminate()
            process.wait(timeout=10)


@pytest.fixture
def settings_overrides(private_redis):
    return {"redis_url": private_redis.url, "queue": {"name": f"outage_{uuid.uuid4().hex[:8]}"}}


def timed_webhook(client, message_id: str) -> tuple[int, float]:
    started = time.monotonic()
    response = post_standard(client, inbound_body(message_id, attachments=ATTACHMENTS))
    return response.status_code, time.monotonic() - started


def test_a_frozen_queue_never_holds_a_webhook(client, runtime, private_redis, caplog):
    caplog.set_level("WARNING", logger="webhook_service.runtime")
    status, _ = timed_webhook(client, "m-before")  # connections to Redis made while it answers
    assert status == 200 and runtime.queue.huey.pending_count() == len(ATTACHMENTS)

    private_redis.freeze()
    latencies = []
    for index in range(3):
        status, seconds = timed_webhook(client, f"m-frozen-{index}")
        assert status == 200
        latencies.append(seconds)
    # The enqueue gives up after queue.enqueue_timeout_seconds (0.25 s): never the 5 s of redis-py's
    # default socket timeout, nor longer with several attachments.
    assert max(latencies) < 2, latencies  # room for a loaded machine, below ten timeouts
    failures = [record for record in caplog.records if record.getMessage() == "enqueue_failed"]
    assert [record.fields["error"] for record in failures] == ["TimeoutError"] * 3
    started = time.monotonic()
    assert client.get("/readyz").status_code == 503  # the queue check gives up as quickly
    assert time.monotonic() - started < 2

    private_redis.thaw()
    # The database kept every attachment; once overdue, the sweep enqueues what the webhooks could not.
    with runtime.db.writing() as connection:
        connection.execute(sa.update(Attachment).values(next_attempt_at=datetime.now(UTC) - timedelta(hours=1)))
    runtime.queue.huey.flush()
    runtime.queue.sweep.call_local()
    assert runtime.queue.huey.pending_count() == 4 * len(ATTACHMENTS)


def test_a_queue_that_is_gone_never_holds_a_webhook(client, runtime, private_redis):
    timed_webhook(client, "m-before")
    private_redis.process.kill()
    private_redis.process.wait()
    status, seconds = timed_webhook(client, "m-gone")
    assert status == 200 and seconds < 2  # refused at once: not redis-py's 5 s timeout (room for a loaded machine)
