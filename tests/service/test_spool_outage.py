"""The spool with the real thing: the service under gunicorn as the Procfile runs it, its database made
unreachable for seconds in the middle of a steady stream of distinct signed webhooks (PostgreSQL stopped
and started again; SQLite's volume filled and emptied: database_outages.py). Every webhook answered 2xx
must be in the database afterwards, and none twice; no 5xx while the spool has room. Then the drainer is
killed (SIGKILL) halfway through a spool and started again: still nothing lost, nothing doubled."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.fixtures.app import NUMBER_A, STANDARD_SECRET, TENANT_A
from tests.fixtures.services import service_unavailable
from tests.service.database_outages import SQLITE_VOLUME_BYTES, PostgresOutage, SqliteOutage
from tests.service.gunicorn import Served, stop
from tests.support.small_filesystem import small_filesystem
from tests.support.standard import inbound_body, standard_headers
from webhook_service.database.migrate import migrate
from webhook_service.intake.spool import RequestSpool

# The load: distinct webhooks at a bounded rate from a few clients, the outage in its middle.
WEBHOOKS = 240
RATE_PER_SECOND = 40
CLIENTS = 4
OUTAGE_STARTS_AFTER = 1.5
OUTAGE_SECONDS = 3.0
# Enough spooled webhooks that a drainer is still at work when it is killed.
SPOOLED_FOR_THE_KILL = 200
DRAINED_WITHIN = 90.0

pytestmark = pytest.mark.slow


@pytest.fixture(params=["postgresql", "sqlite"])
def outage(request, tmp_path) -> Iterator[PostgresOutage | SqliteOutage]:
    if request.param == "postgresql":
        yield PostgresOutage(request.getfixturevalue("private_postgres"))
        return
    volume = tmp_path / "database-volume"
    with small_filesystem(volume, SQLITE_VOLUME_BYTES) as mounted:
        if not mounted:
            service_unavailable("a volume of the test's own for SQLite", "mounting a tmpfs needs root")
        database = SqliteOutage(volume)
        migrate(database.database_url)
        yield database


def service_config(tmp_path: Path, database_url: str) -> str:
    return f"""
data_dir = "{tmp_path / "data"}"
database_url = "{database_url}"
web_workers = 2
web_threads = 4
[[tenants]]
id = "{TENANT_A}"
phone_numbers = [{{id = "n1", number = "{NUMBER_A}"}}]
[[connections]]
provider = "standard"
name = "main"
tenant = "{TENANT_A}"
secrets = ["{STANDARD_SECRET}"]
"""


def post(served: Served, message_id: str) -> int:
    body = inbound_body(message_id)
    headers = {**standard_headers(body), "Content-Type": "application/json"}
    return requests.post(f"{served.base}/webhooks/standard/main", data=body, headers=headers, timeout=30).status_code


def spool_of(tmp_path: Path) -> RequestSpool:
    """The service's spool, read from the test process as any process of the host reads it."""
    return RequestSpool(tmp_path / "data" / "spool", max_bytes=1, max_body_bytes=1)


def wait_until_drained(tmp_path: Path, outage, expected: int, log: str = "") -> None:
    deadline = time.monotonic() + DRAINED_WITHIN
    while time.monotonic() < deadline:
        if not spool_of(tmp_path).files() and messages(outage) >= expected:
            return
        time.sleep(0.2)
    raise AssertionError(f"not drained: {messages(outage)} of {expected} stored\n{log}")


def messages(outage) -> int:
    return outage.scalar("SELECT count(*) FROM messages")


def assert_each_stored_once(outage, message_ids: list[str]) -> None:
    assert messages(outage) == len(message_ids)
    assert outage.scalar("SELECT count(DISTINCT provider_message_id) FROM messages") == len(message_ids)
    assert outage.scalar("SELECT count(*) FROM raw_requests") == len(message_ids)
    assert outage.scalar("SELECT count(*) FROM events") == len(message_ids)
    for message_id in message_ids:  # each of them, not only as many
        assert outage.scalar("SELECT count(*) FROM messages WHERE provider_message_id = :id", id=message_id) == 1


def test_every_webhook_answered_during_an_outage_is_stored_once(outage, gunicorn, tmp_path):
    served = gunicorn(service_config(tmp_path, outage.database_url))
    assert post(served, "warm-up") == 200
    ids = [f"load-{n}" for n in range(WEBHOOKS)]
    statuses: dict[str, int] = {}

    def client(share: list[str], start: float) -> None:
        interval = CLIENTS / RATE_PER_SECOND
        for index, message_id in enumerate(share):
            time.sleep(max(0.0, start + index * interval - time.monotonic()))
            statuses[message_id] = post(served, message_id)

    def make_outage() -> None:
        time.sleep(OUTAGE_STARTS_AFTER)
        outage.begin()
        time.sleep(OUTAGE_SECONDS)
        outage.end()

    start = time.monotonic() + 0.2
    outage_thread = threading.Thread(target=make_outage)
    outage_thread.start()
    with ThreadPoolExecutor(CLIENTS) as pool:
        for result in [pool.submit(client, ids[n::CLIENTS], start + n / RATE_PER_SECOND) for n in range(CLIENTS)]:
            result.result()
    outage_thread.join()

    assert [m for m in ids if statuses[m] != 200] == [], served.log_tail()
    spooled = served.log.read_text().count('"outcome": "spooled"')
    assert spooled > 0, "no webhook met the outage"
    wait_until_drained(tmp_path, outage, WEBHOOKS + 1, served.log_tail())
    assert_each_stored_once(outage, ["warm-up", *ids])
    assert not (tmp_path / "data" / "spool" / "damaged").exists()


def test_a_drainer_killed_halfway_resumes_without_losing_or_doubling(outage, gunicorn, tmp_path):
    config = service_config(tmp_path, outage.database_url)
    served = gunicorn(config)
    assert post(served, "warm-up") == 200
    outage.begin()
    ids = [f"spooled-{n}" for n in range(SPOOLED_FOR_THE_KILL)]
    with ThreadPoolExecutor(CLIENTS) as pool:
        statuses = list(pool.map(lambda message_id: post(served, message_id), ids))
    assert statuses == [200] * len(ids), served.log_tail()
    stop(served)  # no web drainer from here on
    outage.end()
    assert spool_of(tmp_path).status().depth == len(ids)

    # A worker process drains; it is killed outright once it has stored some and not all.
    config_path = tmp_path / "worker.toml"
    config_path.write_text(config)
    first = start_worker(config_path, tmp_path / "worker-1.log")
    try:
        deadline = time.monotonic() + DRAINED_WITHIN
        while messages(outage) - 1 < len(ids) // 3 and time.monotonic() < deadline:
            time.sleep(0.005)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
    stored_when_killed = messages(outage) - 1
    waiting = spool_of(tmp_path).status().depth
    assert 0 < stored_when_killed < len(ids), f"killed after {stored_when_killed} of {len(ids)}"
    assert waiting > 0

    second = start_worker(config_path, tmp_path / "worker-2.log")
    try:
        wait_until_drained(tmp_path, outage, len(ids) + 1, (tmp_path / "worker-2.log").read_text()[-3000:])
    finally:
        os.killpg(second.pid, signal.SIGTERM)
        second.wait(timeout=30)
    assert_each_stored_once(outage, ["warm-up", *ids])
    assert not (tmp_path / "data" / "spool" / "damaged").exists()


def start_worker(config: Path, log: Path) -> subprocess.Popen[bytes]:
    environment = dict(os.environ, WEBHOOK_SERVICE_CONFIG=str(config))
    environment.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with log.open("wb") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "webhook_service.cli", "worker", "--processes", "1", "--threads", "1"],
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
