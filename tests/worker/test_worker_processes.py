"""`webhook-service worker` over several processes: the download threads are shared out, only one
process runs the minute's sweep, attachments are stored whichever process takes them, a child that
dies is started again, and a stop signal stops them all."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.fixtures.app import TENANT_A
from tests.media import samples
from tests.support.worker_process import CLI, WorkerUnderTest
from webhook_service.database.tables import Attachment
from webhook_service.intake.message_store import RawRequestRecord, store_webhook
from webhook_service.model.events import MediaRef, MessageEvent
from webhook_service.runtime import Runtime
from webhook_service.settings import load_settings
from webhook_service.worker.supervisor import split_threads

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("threads", "processes", "shares"),
    [
        (8, 2, [4, 4]),
        (5, 2, [3, 2]),
        (4, 3, [2, 1, 1]),
        (2, 8, [1, 1]),  # never a process without a thread
        (1, 2, [1]),
        (7, 1, [7]),
    ],
)
def test_threads_are_shared_out_evenly(threads, processes, shares):
    assert split_threads(threads, processes) == shares
    assert sum(shares) == threads


@pytest.fixture
def worker_config(tmp_path, database_url):
    config = tmp_path / "worker.toml"
    config.write_text(f"""
data_dir = "{tmp_path / "data"}"
database_url = "{database_url}"
[queue]
worker_threads = 3
worker_processes = 2
[media.fetch]
allow_http = true
allow_private_networks = ["127.0.0.1/32"]
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
def worker_runtime(worker_config):
    runtime = Runtime(load_settings(worker_config, environ={}))
    yield runtime
    runtime.close()


@pytest.fixture
def start_worker(worker_config):
    started: list[WorkerUnderTest] = []

    def start(*arguments: str) -> WorkerUnderTest:
        started.append(WorkerUnderTest(worker_config, *arguments))
        return started[-1]

    yield start
    for worker in started:
        worker.close()


def _cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


def _served_on_loopback(media_server, path: str, body: bytes) -> str:
    # The worker processes resolve host names themselves: the URL names the loopback address.
    media_server.serve(path, body, "image/png")
    return media_server.url(path, host="127.0.0.1")


def _pending_attachments(runtime: Runtime, urls: list[str], prefix: str = "worker-processes") -> list[str]:
    connection = runtime.connections.find("standard", "open")
    ids = []
    for index, url in enumerate(urls):
        raw = RawRequestRecord(
            "worker-test", "POST", "http://test/webhooks/standard/open", [], b"{}", None, datetime.now(UTC)
        )
        event = MessageEvent(
            f"{prefix}-{index}", "inbound", "+15550001111", ("+15551234567",), media=(MediaRef(url, "image/png"),)
        )
        ids += store_webhook(runtime.db, connection, raw, [event], "US").new_attachment_ids
    return ids


def _wait_until_done(runtime: Runtime, ids: list[str], timeout: float = 30) -> dict[str, str]:
    """Each attachment's status once none is pending, with the reason of any that was not stored."""
    deadline = time.monotonic() + timeout
    while True:
        with runtime.db.reading() as session:
            rows = session.execute(
                sa.select(Attachment.id, Attachment.status, Attachment.reason).where(Attachment.id.in_(ids))
            ).all()
        if all(row.status != "pending" for row in rows) or time.monotonic() > deadline:
            return {row.id: row.status if row.status == "stored" else f"{row.status}: {row.reason}" for row in rows}
        time.sleep(0.05)


def test_the_processes_share_the_downloads_and_store_what_is_enqueued(worker_runtime, start_worker, media_server):
    worker = start_worker()
    worker.wait_for("consumer started", count=2)
    started = worker.events("worker_processes_started")[0]
    assert (started["processes"], started["threads"]) == (2, [2, 1])
    children = worker.children()
    assert len(children) == 2
    commands = sorted((_cmdline(pid) for pid in children), key=lambda command: command.index("--threads"))
    threads_and_periodic = sorted(
        (command[command.index("--threads") + 1], "--no-periodic" not in command) for command in commands
    )
    # One sweep a minute in all: only the first process runs huey's scheduler for periodic tasks.
    assert threads_and_periodic == [("1", False), ("2", True)]
    # huey says so as its consumer starts, not always before our own start line: wait for both.
    worker.wait_for("Periodic tasks are enabled")
    worker.wait_for("Periodic tasks are disabled")
    assert len(worker.events("Periodic tasks are enabled")) == 1
    assert len(worker.events("Periodic tasks are disabled")) == 1

    png = samples.png()
    urls = [_served_on_loopback(media_server, f"/worker-processes/{index}.png", png) for index in range(6)]
    ids = _pending_attachments(worker_runtime, urls)
    worker_runtime.queue.enqueue(ids)
    assert _wait_until_done(worker_runtime, ids) == dict.fromkeys(ids, "stored")
    # Each attachment was downloaded once, whichever process took it.
    assert all(len(media_server.requests(f"/worker-processes/{index}.png")) == 1 for index in range(6))

    assert worker.stop(signal.SIGTERM) == 0
    assert all(not Path(f"/proc/{pid}").exists() or _is_zombie(pid) for pid in children)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


# Process management, the same on either database: on one of them, to keep the suite's time (the other
# database's own tests run the same storing).
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_process_that_dies_is_started_again_and_keeps_storing(worker_runtime, start_worker, media_server):
    worker = start_worker()
    worker.wait_for("consumer started", count=2)
    victim = next(pid for pid in worker.children() if "--no-periodic" in _cmdline(pid))
    os.kill(victim, signal.SIGKILL)

    exited = worker.wait_for("worker_process_exited")[0]
    assert (exited["pid"], exited["exit_code"], exited["level"]) == (victim, -signal.SIGKILL, "error")
    worker.wait_for("consumer started", count=3)  # its replacement
    children = worker.children()
    assert len(children) == 2 and victim not in children
    assert sum("--no-periodic" in _cmdline(pid) for pid in children) == 1  # still one sweep, not two

    png = samples.png()
    urls = [_served_on_loopback(media_server, f"/worker-restart/{index}.png", png) for index in range(4)]
    ids = _pending_attachments(worker_runtime, urls)
    worker_runtime.queue.enqueue(ids)
    assert _wait_until_done(worker_runtime, ids) == dict.fromkeys(ids, "stored")
    assert worker.stop(signal.SIGINT) == 0  # graceful: the children finish and exit


# The database plays no part in what this test checks (processes, signals, arguments): one of them is enough.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_one_process_runs_the_consumer_itself(start_worker):
    worker = start_worker("--processes", "1")
    worker.wait_for("consumer started")
    # huey's threads; its one child is the delivery books process it forked as it started.
    books = worker.wait_for("delivery_books_process_started")[0]
    assert worker.children() == [books["pid"]]
    assert worker.events("worker_processes_started") == []
    # At once after its start line: huey's own handlers come later (the child a supervisor has just
    # started is stopped in this window too), and the stop must still be clean, not a traceback.
    assert worker.stop(signal.SIGINT) == 0


# The database plays no part in what this test checks (processes, signals, arguments): one of them is enough.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_bad_counts_are_refused_with_a_usage_error(worker_config):
    environment = dict(os.environ, WEBHOOK_SERVICE_CONFIG=str(worker_config))
    result = subprocess.run(
        [*CLI, "worker", "--processes", "0"], env=environment, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "--threads and --processes must be at least 1" in result.stderr


def _wait_for_request(media_server, path: str, timeout: float = 10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if requests := media_server.requests(path):
            return requests[0]
        time.sleep(0.005)
    raise AssertionError(f"nobody fetched {path} within {timeout} s")


# Process management, the same on either database: on one of them, to keep the suite's time (the other
# database's own tests run the same storing).
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_ctrl_c_stops_gracefully_once_and_running_downloads_finish(worker_runtime, start_worker, media_server):
    """A terminal's Ctrl-C signals the whole foreground process group. The consumers have their own,
    so they hear it once, from the supervisor: huey takes a second SIGINT as "stop now"."""
    worker = start_worker()
    worker.wait_for("consumer started", count=2)
    path = "/worker-ctrl-c/slow.png"
    media_server.serve_after(path, 2.0, samples.png(), "image/png")
    ids = _pending_attachments(worker_runtime, [media_server.url(path, host="127.0.0.1")], prefix="ctrl-c")
    worker_runtime.queue.enqueue(ids)
    _wait_for_request(media_server, path)
    os.killpg(worker.process.pid, signal.SIGINT)  # the supervisor's group, as a terminal would
    assert worker.process.wait(timeout=30) == 0
    worker._reader.join(timeout=5)
    assert worker.events("Received request to shut down now") == []
    assert _wait_until_done(worker_runtime, ids, timeout=1) == {ids[0]: "stored"}


# The database plays no part in what this test checks (processes, signals, arguments): one of them is enough.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_consumers_stop_when_their_supervisor_is_killed(start_worker):
    worker = start_worker()
    worker.wait_for("consumer started", count=2)
    children = worker.children()
    worker.process.send_signal(signal.SIGKILL)  # no chance to stop its children
    worker.process.wait(timeout=10)
    deadline = time.monotonic() + 20
    while any(Path(f"/proc/{pid}").exists() and not _is_zombie(pid) for pid in children):
        assert time.monotonic() < deadline, "the consumers outlived their supervisor"
        time.sleep(0.1)


# Idle consumers that would look at the queue on their own only every 30 s: whatever they fetch within
# WOKEN_WITHIN seconds, a wake-up brought them to (a loaded CI machine has taken 0.8 s to do so).
SLOW_IDLE_POLL = 30
WOKEN_WITHIN = 5.0


def _with_slow_idle_poll(worker_config: Path) -> None:
    text = worker_config.read_text()
    worker_config.write_text(text.replace("[queue]\n", f"[queue]\nidle_poll_seconds = {SLOW_IDLE_POLL}\n", 1))


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_enqueue_wakes_idle_consumers_at_once(worker_config, worker_runtime, start_worker, media_server):
    """What a webhook does: its attachments start downloading now, not at the idle workers' next poll."""
    _with_slow_idle_poll(worker_config)
    worker = start_worker("--threads", "2", "--processes", "2")
    worker.wait_for("consumer started", count=2)
    for round_number in range(3):
        time.sleep(0.5)  # every thread has found the queue empty again and sleeps its 30 s
        path = f"/enqueue-wake/{round_number}.png"
        url = _served_on_loopback(media_server, path, samples.png())
        ids = _pending_attachments(worker_runtime, [url], prefix=f"enqueue-wake-{round_number}")
        enqueued = time.monotonic()
        worker_runtime.queue.enqueue(ids)
        fetched = _wait_for_request(media_server, path, timeout=SLOW_IDLE_POLL / 2)
        assert fetched.received_at - enqueued < WOKEN_WITHIN, (
            f"round {round_number}: fetched {fetched.received_at - enqueued:.2f} s after its enqueue"
        )
        assert _wait_until_done(worker_runtime, ids) == {ids[0]: "stored"}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_task_that_falls_due_wakes_idle_consumers(worker_config, worker_runtime, start_worker, media_server):
    """A retry scheduled for later is queued by huey's scheduler when its time comes, which sends no
    wake-up of its own: the queue's storage wakes the consumer's idle threads as the task is written."""
    _with_slow_idle_poll(worker_config)
    worker = start_worker("--threads", "2", "--processes", "1")
    worker.wait_for("consumer started")
    time.sleep(0.5)
    path = "/falls-due/0.png"
    ids = _pending_attachments(worker_runtime, [_served_on_loopback(media_server, path, samples.png())], prefix="due")
    due_in = 1.5
    scheduled = time.monotonic()
    worker_runtime.queue.enqueue(ids, eta=datetime.now(UTC) + timedelta(seconds=due_in))
    fetched = _wait_for_request(media_server, path, timeout=SLOW_IDLE_POLL / 2)
    # The scheduler looks once a second.
    assert due_in <= fetched.received_at - scheduled < due_in + 1 + WOKEN_WITHIN
    assert _wait_until_done(worker_runtime, ids) == {ids[0]: "stored"}


# Process management, the same on either database: on one of them, to keep the suite's time (the other
# database's own tests run the same storing).
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_hangup_starts_every_consumer_over_in_place_and_they_keep_storing(worker_runtime, start_worker, media_server):
    """SIGHUP, huey's graceful restart: each consumer finishes what runs and starts again as the same process,
    with one delivery books process (the one from before ends), and a second SIGHUP as it starts over ends
    nothing (it is ignored until the consumer handles the signal again)."""
    worker = start_worker("--threads", "2", "--processes", "2")
    worker.wait_for("consumer started", count=2)
    children = worker.children()
    books_before = {pid: _children_of(pid) for pid in children}
    assert all(len(books) == 1 for books in books_before.values()), books_before
    worker.process.send_signal(signal.SIGHUP)
    time.sleep(0.3)  # starting over now: ignored until it handles SIGHUP again (or honoured, if it does)
    worker.process.send_signal(signal.SIGHUP)
    worker.wait_for("consumer started", count=4)
    time.sleep(2)  # a second start over, or a consumer that died of the second signal, shows by now
    assert len(worker.events("consumer started")) in (4, 6)
    assert sorted(worker.children()) == sorted(children)  # started over in place: the supervisor saw nothing
    assert worker.events("worker_process_exited") == []
    deadline = time.monotonic() + 10
    while True:  # each consumer's books process of before has ended, and it forked one new one
        books_now = {pid: _children_of(pid) for pid in children}
        if all(len(books) == 1 and not set(books) & set(books_before[pid]) for pid, books in books_now.items()):
            break
        assert time.monotonic() < deadline, (books_before, books_now)
        time.sleep(0.1)
    url = _served_on_loopback(media_server, "/after-hangup.png", samples.png())
    ids = _pending_attachments(worker_runtime, [url], prefix="after-hangup")
    worker_runtime.queue.enqueue(ids)
    assert _wait_until_done(worker_runtime, ids) == {ids[0]: "stored"}
    assert worker.stop(signal.SIGTERM) == 0


def _children_of(pid: int) -> list[int]:
    """A process's living children (an exited one nobody reaped yet is not counted)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [child for child in map(int, path.read_text().split()) if not _is_zombie(child)]


# The database plays no part in what this test checks (processes, signals, arguments): one of them is enough.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_configuration_the_consumers_cannot_use_stops_the_worker_instead_of_restarting_them(tmp_path, database_url):
    """A declared endpoint's URL that the delivery rules refuse passes the configuration's own checks and
    stops a consumer as it builds its runtime (exit 2): starting it again would fail the same way, every
    30 s for ever, so the worker stops with that code."""
    config = tmp_path / "refused-endpoint.toml"
    config.write_text(f"""
data_dir = "{tmp_path / "data"}"
database_url = "{database_url}"
[queue]
worker_threads = 2
worker_processes = 2
[[tenants]]
id = "{TENANT_A}"
[[delivery.endpoints]]
tenant = "{TENANT_A}"
name = "private"
url = "http://10.0.0.5/hook"
secret = "whsec_{"A" * 32}"
""")
    worker = WorkerUnderTest(config)
    try:
        assert worker.process.wait(timeout=60) == 2
        worker._reader.join(timeout=5)
        exits = worker.events("worker_process_exited")
        assert exits and all(line["exit_code"] == 2 and line["restart_in_seconds"] is None for line in exits)
        assert "could not start" in exits[0]["reason"]
        assert worker.events("delivery.endpoints[0].url")  # the consumer said why
    finally:
        worker.close()
