"""Quarantine keeps refused bodies only up to its byte budget: a flood of unsigned requests cannot fill
the disk, refused requests are still recorded with their reasons, and valid webhooks are unaffected."""

from __future__ import annotations

import base64
import logging
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from tests.providers.security_suite import count
from tests.support.standard import inbound_body, post_standard
from webhook_service.database.tables import Message, QuarantinedRequest
from webhook_service.intake.quarantine import QuarantineBudget

BUDGET = 2500
WRONG_SECRET = "whsec_" + base64.b64encode(b"not the connection's secret!").decode()


@pytest.fixture
def settings_overrides():
    return {"quarantine_max_bytes": BUDGET}


def _padded_body(provider_message_id: str, size: int) -> bytes:
    body = inbound_body(provider_message_id, text="")
    return body.replace(b'"text": ""', b'"text": "' + b"x" * (size - len(body)) + b'"')


def _quarantined(runtime) -> list[QuarantinedRequest]:
    with runtime.db.reading() as session:
        return list(session.scalars(sa.select(QuarantinedRequest).order_by(QuarantinedRequest.id)))


def test_past_the_budget_refused_requests_are_recorded_without_their_bodies(client, runtime, caplog):
    bodies = [_padded_body(f"flood-{index}", 1000) for index in range(3)]
    assert all(len(body) == 1000 for body in bodies)

    with caplog.at_level(logging.WARNING, logger="webhook_service.intake"):
        statuses = [post_standard(client, body, secret=WRONG_SECRET).status_code for body in bodies]

    assert statuses == [401, 401, 401]
    first, second, third = _quarantined(runtime)
    assert first.body == bodies[0] and second.body == bodies[1]
    assert third.body == b""
    assert third.reason.startswith("body of 1000 bytes not kept: quarantine holds its budget of 2500 bytes")
    assert third.reason_code == first.reason_code == "invalid_signature"
    assert {name for name, _ in third.headers} == {name for name, _ in first.headers}
    assert [record.getMessage() for record in caplog.records].count("quarantine_body_not_kept") == 1


def test_valid_webhooks_are_stored_whatever_quarantine_holds(client, runtime):
    for index in range(4):
        post_standard(client, _padded_body(f"flood-{index}", 1000), secret=WRONG_SECRET)

    assert post_standard(client, inbound_body("genuine")).status_code == 200
    assert count(runtime, Message) == 1


def test_the_budget_counts_exactly_and_frees_up_after_pruning(runtime):
    now = [0.0]
    budget = QuarantineBudget(1000, refresh_seconds=10, clock=lambda: now[0])
    with runtime.db.transaction() as session:
        session.add(
            QuarantinedRequest(
                request_id="r",
                received_at=datetime.now(UTC),
                provider="standard",
                connection="main",
                tenant_id=None,
                method="POST",
                url="http://x/",
                headers=[],
                body=b"y" * 400,
                remote_addr=None,
                http_status=401,
                reason_code="invalid_signature",
                reason="test",
            )
        )

    assert budget.admit(runtime.db, 600)  # 400 stored + 600 = exactly the budget
    assert not budget.admit(runtime.db, 1)  # one byte more is refused
    with runtime.db.transaction() as session:
        session.execute(sa.delete(QuarantinedRequest))
    assert not budget.admit(runtime.db, 1)  # counted locally until the next read
    now[0] = 10.0
    assert budget.admit(runtime.db, 1000)  # the database says the space is free again
