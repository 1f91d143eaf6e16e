"""The queue consumer on the embedded (SQLite) queue: idle workers poll on a growing delay, and the
worker that starts a task wakes its idle siblings, so a burst of tasks starts together instead of one
by one as each sibling's delay runs out."""
from __future__ import annotations

import signal
import threading
import time

import pytest

from webhook_service.tasks import IdleWorkers

WORKERS = 4


def test_a_sleeping_worker_wakes_when_a_sibling_calls():
    idle = IdleWorkers()
    started = time.monotonic()
    assert idle.sleep(0.05) is False  # nobody called: the full delay, and "not woken"
    assert time.monotonic() - started >= 0.05

    woken = []
    sleepers = [threading.Thread(target=lambda: woken.append(idle.sleep(5))) for _ in range(3)]
    for sleeper in sleepers:
        sleeper.start()
    time.sleep(0.1)
    started = time.monotonic()
    idle.wake()
    for sleeper in sleepers:
        sleeper.join()
    assert woken == [True, True, True]
    assert time.monotonic() - started < 1


def test_a_wake_up_while_a_worker_looks_at_the_queue_is_not_lost():
    idle = IdleWorkers()
    seen = idle.generation   # a worker reads the generation, then finds the queue empty...
    idle.wake()              # ...while a sibling takes a task and wakes the others
    started = time.monotonic()
    assert idle.sleep(5, since=seen) is True
    assert time.monotonic() - started < 1
    assert idle.sleep(0.05, since=idle.generation) is False  # nothing since: the full delay


@pytest.fixture
def consumer(runtime):
    """The real consumer (thread workers, SQLite queue under the data directory), started as
    `webhook-service worker` starts it, minus the signal handlers it installs."""
    handlers = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    consumer = runtime.queue.consumer(WORKERS)
    consumer.start()
    try:
        yield consumer
    finally:
        consumer.stop(graceful=True)
        for number, handler in handlers.items():
            signal.signal(number, handler)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_idle_workers_join_a_burst_at_once(runtime, consumer):
    started_at: dict[str, float] = {}
    release = threading.Event()

    @runtime.queue.huey.task(name="probe")
    def probe(name: str) -> None:
        started_at[name] = time.monotonic()
        release.wait(10)

    def wait_for_starts(count: int) -> None:
        deadline = time.monotonic() + 5
        while len(started_at) < count and time.monotonic() < deadline:
            time.sleep(0.005)
        assert len(started_at) == count, "every idle worker should take one task"

    for round_number in range(2):
        # Idle long enough for every worker's own polling delay to have grown past half a second.
        time.sleep(1.5)
        started_at.clear()
        release.clear()
        probe("first")
        wait_for_starts(1)
        # The first task woke the idle siblings; more work arrives a moment later.
        time.sleep(0.2)
        enqueued = time.monotonic()
        for number in range(WORKERS - 1):
            probe(f"more-{number}")
        wait_for_starts(WORKERS)
        release.set()
        latest = max(started_at.values()) - enqueued
        assert latest < 0.3, f"round {round_number}: the last task started {latest:.2f} s after its enqueue"
