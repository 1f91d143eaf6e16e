"""Request ids through the real app: every answer carries one (the caller's when it is a plain token),
every line the app writes during the request carries it, and a download the webhook caused carries the
webhook's, also when a later attempt runs outside any request (the worker finds it in the database)."""

from __future__ import annotations

import io
import json
import logging
import re
import time
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa

from tests.fixtures.media_server import loopback_resolver
from tests.media import samples
from tests.support.standard import inbound_body, standard_headers
from webhook_service.database.tables import RAW_REQUESTS, Attachment
from webhook_service.observability.logs import JsonFormatter


@pytest.fixture
def settings_overrides():
    # The queue runs the first download attempt inline, inside the webhook's request.
    return {
        "queue": {"immediate": True},
        "media": {
            "fetch": {"allow_http": True, "allow_private_hosts": ["media.test"]},
            "retry_base_delay_seconds": 0.2,
            "retry_max_delay_seconds": 0.2,
        },
    }


@pytest.fixture
def resolver():
    return loopback_resolver()


@pytest.fixture
def service_log() -> Iterator[Callable[[], list[dict]]]:
    """The service's log lines, formatted as they are written (as in production, where the request id
    is read while the line is written); call it to read them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("webhook_service")
    logger.addHandler(handler)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        logger.removeHandler(handler)


HEX_ID = re.compile(r"^[0-9a-f]{32}$")


@pytest.mark.parametrize("path", ["/healthz", "/no/such/path", "/api/v1/messages", "/webhooks/nope"])
def test_every_answer_carries_a_request_id(client, path):
    first = client.get(path).headers["X-Request-Id"]
    second = client.get(path).headers["X-Request-Id"]
    assert HEX_ID.match(first) and HEX_ID.match(second) and first != second


@pytest.mark.parametrize(
    ("offered", "kept"),
    [("abc-123.X_y", True), ("x" * 64, True), ("x" * 65, False), ("has space", False), ("a/b", False), ("", False)],
)
def test_a_callers_request_id_is_kept_only_when_it_is_a_plain_token(client, offered, kept):
    answered = client.get("/healthz", headers={"X-Request-Id": offered}).headers.getlist("X-Request-Id")
    assert len(answered) == 1
    assert (answered[0] == offered) if kept else HEX_ID.match(answered[0])


def _post(client, body: bytes, request_id: str, **options):
    headers = {**standard_headers(body, **options), "X-Request-Id": request_id}
    return client.post("/webhooks/standard/main", data=body, headers=headers, content_type="application/json")


def test_a_refused_webhook_is_a_warning_with_its_request_id(client, service_log):
    answer = _post(client, inbound_body("m-refused"), "refused-1", secret="wrong")
    assert answer.status_code == 401 and answer.headers["X-Request-Id"] == "refused-1"
    (webhook,) = [line for line in service_log() if line["event"] == "webhook"]
    assert (webhook["level"], webhook["request_id"], webhook["reason"]) == ("warning", "refused-1", "invalid_signature")


def test_every_attempt_at_a_download_carries_the_webhooks_request_id(client, runtime, media_server, service_log):
    # The first attempt fails inside the webhook's request; the retry runs later, outside any request,
    # and finds the id in the database (the raw request of the message).
    url = media_server.fail("/later.png", 503, times=1, then=samples.png())
    body = inbound_body("m-later", attachments=[{"url": url, "contentType": "image/png"}])
    assert _post(client, body, "hook-77").status_code == 200
    with runtime.db.reading() as session:
        attachment_id = session.scalars(sa.select(Attachment.id)).one()
    time.sleep(0.25)  # the retry's due time
    assert runtime.attachments.process(attachment_id) == "stored"
    lines = [line for line in service_log() if line["event"] == "attachment"]
    assert [(line["outcome"], line["request_id"]) for line in lines] == [("retry", "hook-77"), ("stored", "hook-77")]


def test_a_download_whose_webhook_was_pruned_has_no_request_id(client, runtime, media_server, service_log):
    url = media_server.fail("/pruned.png", 503, times=1, then=samples.png())
    body = inbound_body("m-pruned", attachments=[{"url": url, "contentType": "image/png"}])
    assert _post(client, body, "hook-78").status_code == 200
    with runtime.db.writing() as connection:
        connection.execute(sa.delete(RAW_REQUESTS))
    with runtime.db.reading() as session:
        attachment_id = session.scalars(sa.select(Attachment.id)).one()
    time.sleep(0.25)
    assert runtime.attachments.process(attachment_id) == "stored"
    last = [line for line in service_log() if line["event"] == "attachment"][-1]
    assert last["outcome"] == "stored" and "request_id" not in last
