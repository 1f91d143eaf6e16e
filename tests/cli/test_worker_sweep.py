"""Two `webhook-service worker` commands (two hosts, or two started by mistake) each schedule the minute's
sweep; only one runs it, whichever takes the sweep's lease first. On SQLite with the embedded queue, and on
PostgreSQL with Redis."""

from __future__ import annotations

import time
import uuid

import pytest

from tests.cli.conftest import environment_for
from tests.media.test_sweep import pending_attachments
from tests.worker.test_worker_processes import WorkerUnderTest


@pytest.fixture
def settings_overrides(request, database_url):
    overrides = {"log_level": "DEBUG"}
    if database_url.startswith("postgresql"):
        overrides |= {"redis_url": request.getfixturevalue("redis_url"), "queue": {"name": f"sweep_{uuid.uuid4().hex}"}}
    return overrides


@pytest.fixture
def start_worker(settings, runtime, tmp_path, monkeypatch):
    """`webhook-service worker --processes 1`, configured like the test app (and sharing its database)."""
    for variable, value in environment_for(settings).items():
        monkeypatch.setenv(variable, value)
    config = tmp_path / "empty.toml"
    config.write_text("")
    started: list[WorkerUnderTest] = []

    def start() -> WorkerUnderTest:
        started.append(WorkerUnderTest(config, "--processes", "1"))
        return started[-1]

    yield start
    for worker in started:
        worker.close()
    runtime.queue.huey.flush()


def test_of_two_worker_commands_one_sweeps(runtime, start_worker):
    backlog = pending_attachments(runtime, 5)
    # Each consumer's scheduler enqueues the sweep as it starts, then every minute.
    workers = [start_worker(), start_worker()]
    deadline = time.monotonic() + 60
    while sum(len(w.events("sweep_enqueued")) + len(w.events("sweep_skipped")) for w in workers) < 2:
        assert time.monotonic() < deadline, [w.lines[-5:] for w in workers]
        assert all(w.process.poll() is None for w in workers), [w.lines[-5:] for w in workers]
        time.sleep(0.1)
    swept = [line for w in workers for line in w.events("sweep_enqueued")]
    skipped = [line for w in workers for line in w.events("sweep_skipped")]
    assert [line["attachments"] for line in swept] == [len(backlog)]
    assert len(skipped) == 1
    holder_pids = {str(w.process.pid) for w in workers}
    assert skipped[0]["lease_holder"].rsplit(":", 1)[1] in holder_pids
