"""A database that stops answering (its processes stopped by SIGSTOP: the kernel still accepts connections
and acknowledges data, nobody replies) must not hang the web process: every webhook is answered 503 with
Retry-After within the bound the README states, /healthz keeps answering meanwhile, and once the server
runs again the next webhook is stored."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor, as_completed

import pytest
import requests

from tests.fixtures.app import NUMBER_A, TENANT_A
from tests.service.gunicorn import Served
from webhook_service.database.limits import DEFAULT_LIMITS
from webhook_service.database.outage import OUTAGE_HOLD_SECONDS

pytestmark = pytest.mark.slow

# The README's bound for a 503 when the database does not answer, with the default settings: a pooled
# connection's ping unanswered for the answer timeout (statement timeout 2 s + 1 s), then one connect
# attempt (2 s); and half a second for the watchdog's tick and the test's own threads.
ANSWER_BOUND = (DEFAULT_LIMITS.answer_timeout or 0) + DEFAULT_LIMITS.connect_timeout + 0.5
# More webhooks at once than the web process has threads, so that some wait for a thread.
CONCURRENT_WEBHOOKS = 6


def config(tmp_path, database_url: str) -> str:
    return f"""
data_dir = "{tmp_path / "data"}"
database_url = "{database_url}"
web_workers = 1
web_threads = 2
# No spool: this test is about the 503 a frozen database gives without one (test_spool_outage.py: with).
spool_max_bytes = 0
[[tenants]]
id = "{TENANT_A}"
phone_numbers = [{{id = "n1", number = "{NUMBER_A}"}}]
[[connections]]
provider = "standard"
name = "open"
tenant = "{TENANT_A}"
verify = false
"""


def post_webhook(served: Served, message_id: str) -> tuple[requests.Response, float]:
    body = {
        "type": "message.received",
        "data": {"providerMessageId": message_id, "from": "+15550001111", "to": [NUMBER_A], "text": "hi"},
    }
    started = time.monotonic()
    # The client's own limit only keeps a failing test from hanging; the assertions check the bound.
    response = requests.post(f"{served.base}/webhooks/standard/open", json=body, timeout=ANSWER_BOUND + 5)
    return response, time.monotonic() - started


def stored(cluster, message_id: str) -> int:
    return cluster.scalar("SELECT count(*) FROM messages WHERE provider_message_id = :id", id=message_id)


def test_a_frozen_database_is_answered_503_in_bounded_time_and_healthz_keeps_answering(
    gunicorn, private_postgres, tmp_path
):
    served = gunicorn(config(tmp_path, private_postgres.url))
    # The pool now holds a connection to the server, the case that hung: a pooled connection's ping.
    assert post_webhook(served, "before")[0].status_code == 200

    private_postgres.freeze()
    with ThreadPoolExecutor(CONCURRENT_WEBHOOKS) as pool:
        webhooks = [pool.submit(post_webhook, served, f"frozen-{n}") for n in range(CONCURRENT_WEBHOOKS)]
        next(as_completed(webhooks))  # once the first answer is in, the threads are no longer stuck
        started = time.monotonic()
        health = requests.get(f"{served.base}/healthz", timeout=ANSWER_BOUND)
        health_seconds = time.monotonic() - started
        answers = [webhook.result() for webhook in webhooks]
    frozen_for = [round(seconds, 2) for _, seconds in answers]
    assert [response.status_code for response, _ in answers] == [503] * CONCURRENT_WEBHOOKS, frozen_for
    assert all(response.headers.get("Retry-After") for response, _ in answers)
    assert max(frozen_for) <= ANSWER_BOUND, frozen_for
    assert health.status_code == 200 and health_seconds < 2.0, health_seconds  # not stuck behind the webhooks

    private_postgres.thaw()
    time.sleep(OUTAGE_HOLD_SECONDS)  # after the hold, the next request tries the database again
    response, _ = post_webhook(served, "after")
    assert response.status_code == 200, served.log_tail()
    assert stored(private_postgres, "after") == 1
