"""The service as the README starts it: `webhook-service run` (migrations, gunicorn, the queue worker)
in a subprocess, a webhook with an attachment on the loopback media server, the attachment stored by
the real worker, read back through the API and its signed URL."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from tests.fixtures.app import NUMBER_A, TENANT_A, USER_A
from tests.fixtures.services import free_port
from tests.media import samples

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "webhook_service.cli"]


@pytest.fixture
def service(tmp_path, database_url, media_server):
    port = free_port()
    config = tmp_path / "service.toml"
    config.write_text(f"""
data_dir = "{tmp_path / "data"}"
database_url = "{database_url}"
port = {port}
web_workers = 1
web_threads = 4
[queue]
worker_threads = 2
[media.fetch]
allow_http = true
allow_private_networks = ["127.0.0.1/32"]
[[tenants]]
id = "{TENANT_A}"
phone_numbers = [{{id = "n1", number = "{NUMBER_A}"}}]
[[api_users]]
username = "{USER_A[0]}"
password_hash = "{_hash(USER_A[1])}"
tenant = "{TENANT_A}"
[[connections]]
provider = "standard"
name = "open"
tenant = "{TENANT_A}"
verify = false
""")
    environment = dict(os.environ, WEBHOOK_SERVICE_CONFIG=str(config))
    environment.pop("PROMETHEUS_MULTIPROC_DIR", None)
    process = subprocess.Popen(
        [*CLI, "run"],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_ready(base, process)
        yield base, process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        shutil.rmtree(tmp_path / "data", ignore_errors=True)


def _hash(password: str) -> str:
    from werkzeug.security import generate_password_hash

    return generate_password_hash(password, method="pbkdf2:sha256:1000")


def _wait_until_ready(base: str, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the service exited: {process.stderr.read()[-2000:]}")
        try:
            if requests.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError("the service did not become ready")


# On PostgreSQL: `run` on SQLite, the embedded defaults, serves webhooks in the wheel's test (test_wheel.py),
# and the worker's processes store downloads on SQLite in test_worker_processes.py; one database here
# keeps the suite's time.
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_run_serves_webhooks_and_the_worker_stores_attachments(service, media_server):
    base, process = service
    image = samples.png()
    url = media_server.serve("/e2e.png", image, content_type="image/png")
    url = url.replace("media.test", "127.0.0.1")
    body = {
        "type": "message.received",
        "data": {
            "providerMessageId": "e2e-1",
            "from": "+15550001111",
            "to": [NUMBER_A],
            "text": "end to end",
            "attachments": [{"url": url, "contentType": "image/png"}],
        },
    }
    response = requests.post(f"{base}/webhooks/standard/open", json=body, timeout=10)
    assert response.status_code == 200 and response.headers["X-Request-Id"]

    deadline = time.monotonic() + 30
    while True:
        message = requests.get(f"{base}/api/v1/providers/standard/messages/e2e-1", auth=USER_A, timeout=10).json()
        attachment = message["attachments"][0]
        if attachment["status"] != "pending" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert attachment["status"] == "stored", attachment
    download = requests.get(attachment["url"], timeout=10)
    assert download.status_code == 200 and download.headers["Content-Type"] == "image/png"
    assert len(download.content) == attachment["size"]
    events = requests.get(f"{base}/api/v1/events", auth=USER_A, timeout=10).json()["events"]
    assert [e["type"] for e in events] == ["message.received", "attachment.stored"]
    # One scrape target on one host: the web's /metrics adds up the worker's processes too.
    stored = 'attachment_outcomes_total{outcome="stored",reason="none"} 1.0'
    deadline = time.monotonic() + 10
    while stored not in (metrics := requests.get(f"{base}/metrics", timeout=10).text) and time.monotonic() < deadline:
        time.sleep(0.1)  # counted just after the outcome is committed
    assert 'webhook_requests_total{outcome="accepted",provider="standard"} 1.0' in metrics
    assert stored in metrics and "attachment_processing_seconds_count 1.0" in metrics

    os.killpg(process.pid, signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    assert "webhook-service listening on http://127.0.0.1:" in process.stdout.read()


# Process management, the same on either database: on one of them, to keep the suite's time (the other
# database's own tests run the same storing).
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_hangup_of_the_terminal_stops_web_and_worker_with_run(service):
    """SIGHUP to the whole group, as a closed terminal sends it: `run` stops both (before, `run` ended by the
    signal and left the web and the worker running without it)."""
    base, process = service
    descendants = _descendants(process.pid)
    assert len(descendants) >= 3  # web's master and worker, and theirs
    os.killpg(process.pid, signal.SIGHUP)
    assert process.wait(timeout=60) == 0
    _assert_all_end(descendants, base)


# Process management, the same on either database: on one of them, to keep the suite's time (the other
# database's own tests run the same storing).
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_ctrl_c_stops_run_gracefully_a_webhook_still_arriving_is_answered_and_a_download_running_is_stored(
    service, media_server, database_url
):
    """A terminal's Ctrl-C signals its foreground process group, which is `run` alone: `run` tells gunicorn
    its graceful stop (SIGTERM) and the worker its own (SIGINT), once. Before, both children heard the
    terminal's SIGINT too: gunicorn's quick stop, which cut the webhook still arriving, and the worker then
    took `run`'s SIGTERM as a second stop, ending the download in progress without an outcome."""
    base, process = service
    path = "/ctrl-c/slow.png"
    url = media_server.serve_after(path, 2.0, samples.png(), "image/png").replace("media.test", "127.0.0.1")
    response = requests.post(f"{base}/webhooks/standard/open", json=_inbound("ctrl-c-1", [url]), timeout=10)
    assert response.status_code == 200
    deadline = time.monotonic() + 10
    while not media_server.requests(path):
        assert time.monotonic() < deadline, "the worker did not start the download"
        time.sleep(0.02)

    body = json.dumps(_inbound("ctrl-c-2", [])).encode()
    head = (
        f"POST /webhooks/standard/open HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1])), timeout=30) as connection:
        connection.sendall(head + body[:20])
        time.sleep(0.2)  # the web worker has the request's head
        os.killpg(process.pid, signal.SIGINT)  # as a terminal does
        time.sleep(0.5)
        connection.sendall(body[20:])
        answer = connection.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert process.wait(timeout=60) == 0
    assert "Received request to shut down now" not in process.stderr.read()

    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as connection:
            stored = connection.execute(sa.text("SELECT provider_message_id FROM messages")).scalars().all()
            outcomes = connection.execute(sa.text("SELECT status FROM attachments")).scalars().all()
    finally:
        engine.dispose()
    assert sorted(stored) == ["ctrl-c-1", "ctrl-c-2"]
    assert outcomes == ["stored"]


# Process management, the same on either database: on one of them, to keep the suite's time (the other
# database's own tests run the same storing).
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_web_and_worker_stop_when_run_is_killed_outright(service):
    """Their own process groups keep a terminal's signals from them; a `run` killed outright (SIGKILL, the
    OOM killer) cannot pass a stop on, so the kernel sends each its graceful stop as `run` ends."""
    base, process = service
    descendants = _descendants(process.pid)
    process.kill()
    process.wait(timeout=10)
    _assert_all_end(descendants, base)


def _assert_all_end(descendants: list[int], base: str) -> None:
    """`run`'s processes all end within 30 s of `run`, and nothing answers on its port."""
    deadline = time.monotonic() + 30
    while alive := [pid for pid in descendants if _running(pid)]:
        assert time.monotonic() < deadline, f"still running after run ended: {alive}"
        time.sleep(0.1)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{base}/healthz", timeout=2)


def _inbound(provider_message_id: str, attachment_urls: list[str]) -> dict:
    return {
        "type": "message.received",
        "data": {
            "providerMessageId": provider_message_id,
            "from": "+15550001111",
            "to": [NUMBER_A],
            "text": "stopping",
            "attachments": [{"url": url, "contentType": "image/png"} for url in attachment_urls],
        },
    }


def _descendants(pid: int) -> list[int]:
    children = [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return children + [grandchild for child in children for grandchild in _descendants(child)]


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
