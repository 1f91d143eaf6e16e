"""Logs and metrics as operators get them from the processes the Procfile starts: gunicorn with
webhook_service.gunicorn_config, and `webhook-service worker`.

Logs: every line of stderr is one JSON object; without `access_log` there is no access line at all
(gunicorn used to add an Apache-format one with the whole query), with it exactly one per request, its
query's secrets hidden; no secret sent in a query string appears anywhere; every line written during a
request carries its request id, and the worker's lines about the downloads a webhook caused carry that
webhook's; refused webhooks are warnings.

Metrics: a scrape of any gunicorn worker counts every worker's requests, and the worker's downloads
show on the scrape target the README names (the web's /metrics, or the worker's own port).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.app import NUMBER_A, TENANT_A
from tests.fixtures.services import free_port
from tests.media import samples
from tests.service.gunicorn import Served
from tests.support.worker_process import WorkerUnderTest
from webhook_service.database.migrate import migrate

pytestmark = pytest.mark.slow

SECRET = "Pt-s3cret-4f9e1c"  # the ProTexting connection's access_token
OLD_SECRET = "Pt-0ld-secret-77aa"  # a wrong (say, rotated-out) token: a secret all the same
HOOK_KEY = "Hook-k3y-5d2b"  # a mapping connection's token in a query parameter of its own choosing
SIGNATURE = "Sig-abcdef0123"
SECRETS = (SECRET, OLD_SECRET, HOOK_KEY, SIGNATURE)
USER_AGENT = "provider-test/1.0"


def _service_config(tmp_path: Path, *, access_log: bool, web_workers: int = 1, extra: str = "") -> str:
    database = f"sqlite:///{tmp_path / 'service.db'}"
    migrate(database)
    return f"""
data_dir = "{tmp_path / "data"}"
database_url = "{database}"
web_workers = {web_workers}
web_threads = 4
access_log = {"true" if access_log else "false"}
{extra}
[media.fetch]
allow_http = true
allow_private_networks = ["127.0.0.1/32"]
[[tenants]]
id = "{TENANT_A}"
phone_numbers = [{{id = "n1", number = "{NUMBER_A}"}}]
[[connections]]
provider = "protexting"
name = "main"
tenant = "{TENANT_A}"
secrets = ["{SECRET}"]
[[connections]]
provider = "protexting"
name = "custom"
tenant = "{TENANT_A}"
secrets = ["{HOOK_KEY}"]
options = {{ auth = {{ kind = "token", query_parameter = "hook_key" }} }}
[[connections]]
provider = "standard"
name = "open"
tenant = "{TENANT_A}"
verify = false
"""


def _protexting(base: str, path: str, query: str, message_id: str, **headers: str) -> requests.Response:
    body = {"Id": message_id, "MobilePhone": "+15550001111", "SendFrom": NUMBER_A, "Message": "hi"}
    return requests.post(f"{base}{path}?{query}", json=body, headers={"User-Agent": USER_AGENT, **headers}, timeout=10)


def _log_lines(served: Served) -> list[dict]:
    """Every line of gunicorn's stderr, each of which must be one JSON object."""
    lines = []
    for text in served.log.read_text().splitlines():
        entry = json.loads(text)  # raises on any line that is not JSON
        assert isinstance(entry, dict), text
        lines.append(entry)
    return lines


def _wait_for_lines(served: Served, ready, timeout: float = 10) -> list[dict]:
    # The access line is written once the answer has been sent: the client may read it first.
    deadline = time.monotonic() + timeout
    while True:
        lines = _log_lines(served)
        if ready(lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def test_without_access_log_one_json_line_per_webhook_and_no_secret(gunicorn, tmp_path):
    served = gunicorn(_service_config(tmp_path, access_log=False))
    answers = {
        "accepted": _protexting(served.base, "/webhooks/protexting/main", f"access_token={SECRET}&x=1", "pt-1"),
        "unauthorized": _protexting(served.base, "/webhooks/protexting/main", f"access_token={OLD_SECRET}", "pt-2"),
        "not_found": _protexting(served.base, "/webhooks/protexting/nope", f"access_token={SECRET}", "pt-3"),
    }
    assert [answer.status_code for answer in answers.values()] == [200, 401, 404]
    assert requests.get(f"{served.base}/healthz?token={SECRET}", timeout=10).status_code == 200

    ids = {outcome: answer.headers["X-Request-Id"] for outcome, answer in answers.items()}
    lines = _wait_for_lines(served, lambda lines: sum(line["event"] == "webhook" for line in lines) == 3)
    webhooks = [line for line in lines if line["event"] == "webhook"]
    # One line per webhook, none from gunicorn's access log.
    assert sorted(line["request_id"] for line in webhooks) == sorted(ids.values())
    assert [line for line in lines if line["logger"] == "gunicorn.access" or line["event"] == "access"] == []
    levels = {line["outcome"]: line["level"] for line in webhooks}
    assert levels == {"accepted": "info", "unauthorized": "warning", "not_found": "warning"}
    text = served.log.read_text()
    assert not [secret for secret in SECRETS if secret in text]


def test_access_lines_are_json_once_per_request_with_query_secrets_hidden(gunicorn, tmp_path):
    # A Redis that is not there: enqueues fail (a line the intake logs without naming the request) and
    # /readyz logs its failed check (the same).
    redis_url = f"redis://127.0.0.1:{free_port()}/0"
    served = gunicorn(_service_config(tmp_path, access_log=True, extra=f'redis_url = "{redis_url}"'))
    media = {"ResourceLink": "http://127.0.0.1:9/a.png"}
    sent = [
        _protexting(served.base, "/webhooks/protexting/main", f"access_token={SECRET}&x=1", "pt-1"),
        _protexting(
            served.base,
            "/webhooks/protexting/main",
            f"access_token={OLD_SECRET}",
            "pt-2",
            **{"X-Request-Id": "prov-42"},
        ),
        _protexting(served.base, "/webhooks/protexting/custom", f"hook_key={HOOK_KEY}&Access_Token={SECRET}", "pt-3"),
        _protexting(served.base, "/webhooks/protexting/nope", f"access_token={SECRET}", "pt-4"),
        requests.post(
            f"{served.base}/webhooks/protexting/main?access_token={SECRET}",
            json={"Id": "pt-5", "MobilePhone": "+15550001111", "SendFrom": NUMBER_A, **media},
            headers={"User-Agent": USER_AGENT},
            timeout=10,
        ),
        requests.get(f"{served.base}/media/a/b?expires=1&signature={SIGNATURE}", timeout=10),
        requests.get(f"{served.base}/m/x?sig={SIGNATURE}", timeout=10),
        requests.get(f"{served.base}/readyz", timeout=10),
    ]
    assert [answer.status_code for answer in sent[:5]] == [200, 401, 200, 404, 200]
    assert sent[1].headers["X-Request-Id"] == "prov-42"  # a caller's own id is kept
    ids = [answer.headers["X-Request-Id"] for answer in sent]
    assert len(set(ids)) == len(ids)

    # The fixture's /healthz probes while gunicorn started are left out (counting them, the wait could end
    # before the last request's line, which gunicorn writes after the answer has gone).
    def access_lines_of(lines):
        return [line for line in lines if line["event"] == "access" and line["path"] != "/healthz"]

    lines = _wait_for_lines(served, lambda lines: len(access_lines_of(lines)) >= len(sent))
    access_lines = access_lines_of(lines)
    access = {line["request_id"]: line for line in access_lines}
    assert Counter(line["request_id"] for line in access_lines) == Counter(ids)
    assert all(line["logger"] == "gunicorn.access" and line["level"] == "info" for line in access.values())
    first = access[ids[0]]
    assert first == {
        "ts": first["ts"],
        "level": "info",
        "logger": "gunicorn.access",
        "event": "access",
        "method": "POST",
        "path": "/webhooks/protexting/main",
        "query": "access_token=%5Bredacted%5D&x=1",
        "status": 200,
        "duration_ms": first["duration_ms"],
        "bytes": len(sent[0].content),
        "remote_addr": "127.0.0.1",
        "request_id": ids[0],
        "user_agent": USER_AGENT,
    }
    assert first["duration_ms"] > 0
    assert [access[request_id]["query"] for request_id in ids] == [
        "access_token=%5Bredacted%5D&x=1",
        "access_token=%5Bredacted%5D",
        # The connection's own parameter, and the names every request hides, in any case.
        "hook_key=%5Bredacted%5D&Access_Token=%5Bredacted%5D",
        "access_token=%5Bredacted%5D",
        "access_token=%5Bredacted%5D",
        "expires=1&signature=%5Bredacted%5D",
        "sig=%5Bredacted%5D",
        None,
    ]
    assert [access[request_id]["status"] for request_id in ids] == [answer.status_code for answer in sent]

    # Every line written while a request ran carries its id, and only that request's lines.
    by_request = {request_id: [line for line in lines if line.get("request_id") == request_id] for request_id in ids}
    events = {request_id: sorted(line["event"] for line in found) for request_id, found in by_request.items()}
    assert events[ids[0]] == ["access", "webhook"]
    assert events[ids[1]] == ["access", "webhook"]
    assert events[ids[4]] == ["access", "enqueue_failed", "webhook"]
    assert events[ids[7]] == ["access", "readiness_check_failed"]
    assert [line["level"] for line in by_request[ids[1]] if line["event"] == "webhook"] == ["warning"]
    request_lines = [line for line in lines if line["logger"] != "gunicorn.error" and line.get("path") != "/healthz"]
    assert all(line.get("request_id") in ids for line in request_lines), request_lines

    text = served.log.read_text()
    assert not [secret for secret in SECRETS if secret in text]


def _sum(exposition: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(key) == value for key, value in labels.items()):
                total += sample.value
    return total


def _per_worker_webhooks(served: Served, tmp_path: Path, workers: list[int]) -> dict[int, float]:
    """What each gunicorn worker counted, read from its own file."""
    counts = {}
    for pid in workers:
        path = tmp_path / "data" / "metrics" / "web" / f"counter_{pid}.db"
        families = MultiProcessCollector.merge([str(path)], accumulate=True) if path.exists() else []
        counts[pid] = sum(
            sample.value for family in families for sample in family.samples if sample.name == "webhook_requests_total"
        )
    return counts


def test_every_scrape_counts_every_gunicorn_workers_requests(gunicorn, tmp_path):
    served = gunicorn(_service_config(tmp_path, access_log=False, web_workers=2))
    workers = served.workers(2)
    sent = 0

    def post(index: int) -> int:
        body = {
            "type": "message.received",
            "data": {"providerMessageId": f"m-{index}", "from": "+15550001111", "to": [NUMBER_A]},
        }
        # A connection per request, so that the kernel hands them to either worker.
        return requests.post(f"{served.base}/webhooks/standard/open", json=body, timeout=10).status_code

    # Until both workers have answered some (which one accepts a connection is the kernel's choice).
    with ThreadPoolExecutor(8) as pool:
        for _ in range(30):
            assert set(pool.map(post, range(sent, sent + 16))) == {200}
            sent += 16
            if all(_per_worker_webhooks(served, tmp_path, workers).values()):
                break
    per_worker = _per_worker_webhooks(served, tmp_path, workers)
    assert all(per_worker.values()) and sum(per_worker.values()) == sent, per_worker

    for _ in range(10):  # each scrape is answered by either worker
        exposition = requests.get(f"{served.base}/metrics", timeout=10).text
        assert _sum(exposition, "webhook_requests_total", provider="standard", outcome="accepted") == sent
        assert _sum(exposition, "webhook_request_seconds_count", provider="standard") == sent
        # Each webhook one unit of a group commit's batch; the batches are as many as there were commits.
        assert _sum(exposition, "database_group_commit_units_sum") == sent
        assert 1 <= _sum(exposition, "database_group_commit_units_count") <= sent


def _attachment_lines(worker: WorkerUnderTest, count: int, timeout: float = 30) -> list[dict]:
    deadline = time.monotonic() + timeout
    while len(found := [line for line in worker.lines if line["event"] == "attachment"]) < count:
        assert time.monotonic() < deadline, worker.lines[-5:]
        time.sleep(0.05)
    return found


@pytest.mark.parametrize("worker_serves_its_own", [False, True], ids=["web-scrapes-all", "worker-port"])
def test_the_workers_downloads_show_on_the_documented_scrape_target(
    gunicorn, tmp_path, media_server, worker_serves_its_own
):
    port = free_port()
    extra = f"worker_metrics_port = {port}" if worker_serves_its_own else ""
    served = gunicorn(
        _service_config(tmp_path, access_log=False, extra=extra) + "[queue]\nworker_threads = 2\nworker_processes = 2\n"
    )
    worker = WorkerUnderTest(served.log.with_suffix(".toml"))
    try:
        worker.wait_for("consumer started", count=2)
        media_server.serve("/metrics-test.png", samples.png(), "image/png")
        url = media_server.url("/metrics-test.png", host="127.0.0.1")
        request_ids = [f"hook-{index}" for index in range(3)]
        for index, request_id in enumerate(request_ids):
            body = {
                "type": "message.received",
                "data": {
                    "providerMessageId": f"d-{index}",
                    "from": "+15550001111",
                    "to": [NUMBER_A],
                    "attachments": [{"url": url}],
                },
            }
            answer = requests.post(
                f"{served.base}/webhooks/standard/open", json=body, headers={"X-Request-Id": request_id}, timeout=10
            )
            assert answer.status_code == 200 and answer.headers["X-Request-Id"] == request_id

        downloads = _attachment_lines(worker, count=3)
        # The worker's lines about each download carry the id of the webhook that caused it.
        assert sorted(line["request_id"] for line in downloads) == request_ids
        assert [line["outcome"] for line in downloads] == ["stored"] * 3

        web = requests.get(f"{served.base}/metrics", timeout=10).text
        target = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text if worker_serves_its_own else web
        assert _sum(target, "attachment_outcomes_total", outcome="stored", reason="none") == 3
        assert _sum(target, "attachment_processing_seconds_count") == 3
        if worker_serves_its_own:  # counted once: the web's /metrics leaves the worker's out
            assert _sum(web, "attachment_processing_seconds_count") == 0
        assert worker.not_json == []
    finally:
        worker.close()
