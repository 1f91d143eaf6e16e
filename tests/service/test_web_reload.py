"""SIGHUP to the web process, as a process manager reloads it (the README's way, the control socket being
off): gunicorn starts new workers, which read the service configuration again, and stops the old ones
gracefully; webhooks go on being answered and stored, before, during and after, none of them refused."""

from __future__ import annotations

import signal
import threading
import time

import pytest
import requests
import sqlalchemy as sa

from tests.fixtures.app import NUMBER_A, TENANT_A
from webhook_service.database.engine import Database
from webhook_service.database.migrate import migrate
from webhook_service.database.tables import MESSAGES

pytestmark = pytest.mark.slow

WORKERS = 2


def test_a_hangup_replaces_the_workers_and_no_webhook_is_refused_meanwhile(gunicorn, tmp_path):
    database = f"sqlite:///{tmp_path / 'service.db'}"
    migrate(database)
    configuration = f"""
data_dir = "{tmp_path / "data"}"
database_url = "{database}"
web_workers = {WORKERS}
web_threads = 2
[[tenants]]
id = "{TENANT_A}"
phone_numbers = [{{id = "n1", number = "{NUMBER_A}"}}]
[[connections]]
provider = "standard"
name = "open"
tenant = "{TENANT_A}"
verify = false
"""
    served = gunicorn(configuration)
    second = f'\n[[connections]]\nprovider = "standard"\nname = "second"\ntenant = "{TENANT_A}"\nverify = false\n'
    assert requests.post(f"{served.base}/webhooks/standard/second", json={}, timeout=10).status_code == 404
    # The new workers read the service configuration again: a connection added to the file is served.
    config_file = next(tmp_path.glob("service-*.toml"))
    config_file.write_text(config_file.read_text() + second)
    before = served.workers(WORKERS)
    answers: list[int | str] = []  # each webhook's status, or the error it met
    sending = threading.Event()
    sending.set()

    def send() -> None:
        # A connection per webhook: a kept-alive one that an old worker closes as a request is sent on it
        # fails in any HTTP server (the provider retries); what must not happen is a refused connection.
        while sending.is_set():
            body = {
                "type": "message.received",
                "data": {"providerMessageId": f"reload-{len(answers)}", "from": "+15550001111", "to": [NUMBER_A]},
            }
            try:
                answers.append(
                    requests.post(f"{served.base}/webhooks/standard/open", json=body, timeout=30).status_code
                )
            except requests.RequestException as error:  # a refused connection, say
                answers.append(repr(error))

    sender = threading.Thread(target=send)
    sender.start()
    try:
        time.sleep(0.5)
        served.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while True:
            now = served.workers(WORKERS)
            if len(now) == WORKERS and not set(now) & set(before):
                break
            assert time.monotonic() < deadline, f"the workers were not replaced: {before} -> {now}"
            time.sleep(0.1)
        time.sleep(0.5)  # the new workers answer too
    finally:
        sending.clear()
        sender.join(timeout=30)
    assert served.process.poll() is None
    added = {
        "type": "message.received",
        "data": {"providerMessageId": "second-1", "from": "+15550001111", "to": [NUMBER_A]},
    }
    assert requests.post(f"{served.base}/webhooks/standard/second", json=added, timeout=10).status_code == 200
    assert len(answers) > 20 and set(answers) == {200}, sorted(set(map(str, answers)))
    db = Database(database)
    try:
        with db.reading() as session:
            assert session.scalar(sa.select(sa.func.count()).select_from(MESSAGES)) == len(answers) + 1
    finally:
        db.dispose()
