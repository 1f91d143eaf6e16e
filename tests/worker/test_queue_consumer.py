"""The queue consumer on the embedded (SQLite) queue: idle workers poll on a growing delay, and the
worker that starts a task wakes its idle siblings, so a burst of tasks starts together instead of one
by one as each sibling's delay runs out."""

from __future__ import annotations

import signal
import socket
import threading
import time

import pytest

from webhook_service.runtime import Runtime
from webhook_service.worker.consumer import IdleWorkers
from webhook_service.worker.wake import WakeChannel

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
    assert time.monotonic() - started < 2.5  # the wake-up, not the 5 s sleep (room for a loaded machine)


def test_a_wake_up_while_a_worker_looks_at_the_queue_is_not_lost():
    idle = IdleWorkers()
    seen = idle.generation  # a worker reads the generation, then finds the queue empty...
    idle.wake()  # ...while a sibling takes a task and wakes the others
    started = time.monotonic()
    assert idle.sleep(5, since=seen) is True
    assert time.monotonic() - started < 2.5  # not the 5 s sleep
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


# Across processes: the consumers sharing one embedded queue wake each other -----------------------


def _wake_counter():
    woken = threading.Event()
    return woken, woken.set


def test_a_wake_up_reaches_the_other_processes_channels_but_not_its_own(tmp_path):
    directory = tmp_path / "wake"
    (first_woken, wake_first), (second_woken, wake_second) = _wake_counter(), _wake_counter()
    first, second = WakeChannel(directory, wake_first), WakeChannel(directory, wake_second)
    try:
        first.wake_others()
        assert second_woken.wait(2)
        assert not first_woken.wait(0.2)
        second.wake_others()
        assert first_woken.wait(2)
    finally:
        first.close()
        second.close()
    assert list(directory.iterdir()) == []  # each removed its socket


def test_a_socket_left_by_a_dead_process_is_removed_by_the_next_wake_up(tmp_path):
    directory = tmp_path / "wake"
    directory.mkdir()
    dead = directory / "12345-deadbeef"
    orphan = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    orphan.bind(str(dead))
    orphan.close()  # bound, then gone without unlinking: what a killed process leaves
    assert dead.exists()
    channel = WakeChannel(directory, lambda: None)
    try:
        channel.wake_others()
        assert not dead.exists()
    finally:
        channel.close()


def test_a_socket_path_too_long_for_unix_sockets_is_refused_at_once(tmp_path):
    directory = tmp_path / ("d" * 120)
    with pytest.raises(OSError, match="too long"):
        WakeChannel(directory, lambda: None)


def test_clearing_a_revocation_flag_takes_no_write_lock_when_there_is_none(tmp_path, monkeypatch):
    """huey clears each task's revocation flag after running it; the embedded queue looks first."""
    from webhook_service.worker.queue import _EmbeddedQueueStorage

    storage = _EmbeddedQueueStorage("q", filename=str(tmp_path / "queue.db"), fsync=False)
    storage.put_data("r:task", b"1")
    exclusive = []
    real_db = storage.db

    def counting_db(commit=False, close=False):
        exclusive.append(commit)
        return real_db(commit=commit, close=close)

    monkeypatch.setattr(storage, "db", counting_db)
    assert storage.delete_data("r:task") is True  # a flag there: cleared, in a write transaction
    assert storage.has_data_for_key("r:task") is False
    exclusive.clear()
    assert storage.delete_data("r:task") is False  # none: a read only
    assert exclusive == [False]
    storage.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_revoked_task_is_still_skipped_on_the_embedded_queue(runtime, consumer):
    ran = []

    @runtime.queue.huey.task(name="revocable")
    def revocable(name: str) -> None:
        ran.append(name)

    huey = runtime.queue.huey
    skipped, runs = revocable.s("skipped"), revocable.s("runs")
    huey.revoke_by_id(skipped.id)
    huey.enqueue(skipped)
    huey.enqueue(runs)
    deadline = time.monotonic() + 5
    while not ran and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    assert ran == ["runs"]


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_consumer_that_starts_a_task_wakes_the_consumers_of_other_processes(runtime):
    """Two consumers of one thread each, with their own huey instances on the one queue file, stand
    for two processes. The second starts half a second after the first, so once both poll only once
    a second they look half a second apart. Two tasks put in the queue without a wake-up, as huey's
    scheduler puts a retry that is due: whoever looks first takes one, and must wake the other to
    take the second at once rather than half a second later."""
    started_at: dict[str, float] = {}
    release = threading.Event()
    other_process = Runtime(runtime.settings)
    probes = []
    for queue in (runtime.queue, other_process.queue):

        @queue.huey.task(name="probe")
        def probe(name: str) -> None:
            started_at[name] = time.monotonic()
            release.wait(10)

        probes.append(probe)

    handlers = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    consumers = [runtime.queue.consumer(1, periodic=False), other_process.queue.consumer(1, periodic=False)]
    try:
        consumers[0].start()
        time.sleep(0.5)
        consumers[1].start()
        for round_number in range(2):
            time.sleep(3)  # idle: both at the one-second ceiling of their polling delay
            started_at.clear()
            release.clear()
            probes[0](f"a{round_number}")  # huey's own enqueue: no wake-up from the enqueuer
            probes[0](f"b{round_number}")
            deadline = time.monotonic() + 5
            while len(started_at) < 2 and time.monotonic() < deadline:
                time.sleep(0.005)
            release.set()
            assert len(started_at) == 2, "each consumer should take one task"
            spread = abs(started_at[f"a{round_number}"] - started_at[f"b{round_number}"])
            assert spread < 0.2, f"round {round_number}: the second task started {spread:.2f} s after the first"
    finally:
        release.set()
        for consumer in consumers:
            consumer.stop(graceful=True)
        for number, handler in handlers.items():
            signal.signal(number, handler)
        other_process.close()
