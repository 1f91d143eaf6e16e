"""A message's status history is shown as its newest STATUS_HISTORY_SHOWN reports: every report is kept,
and a sender may send any number for one message, which every read of it, every page holding it and
every push delivery of its events (each carries the message) would otherwise carry whole."""

from __future__ import annotations

import base64
import json

import sqlalchemy as sa

from tests.fixtures.app import USER_A
from tests.support.standard import post_standard, status_body
from webhook_service.database.messages import STATUS_HISTORY_SHOWN
from webhook_service.database.tables import EVENTS, StatusEventRow
from webhook_service.delivery.payloads import render_payloads

A = {"Authorization": "Basic " + base64.b64encode(":".join(USER_A).encode()).decode()}
REPORTS = STATUS_HISTORY_SHOWN + 3


def send_reports(client, provider_message_id: str, count: int) -> None:
    """`count` distinct reports (each a minute later than the one before) for one outbound message."""
    for number in range(count):
        occurred = f"2030-01-01T{number // 60:02d}:{number % 60:02d}:00Z"
        body = status_body(provider_message_id, "sent", provider_status=f"sent-{number}", occurred_at=occurred)
        assert post_standard(client, body).status_code == 200


def api_message(client, provider_message_id: str) -> dict:
    response = client.get(f"/api/v1/messages?providerMessageId={provider_message_id}", headers=A)
    assert response.status_code == 200
    [message] = response.get_json()["messages"]
    return message


def test_the_newest_reports_are_shown_and_the_message_says_that_older_ones_are_left_out(client, runtime):
    send_reports(client, "many", REPORTS)
    send_reports(client, "few", 2)
    with runtime.db.reading() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(StatusEventRow)) == REPORTS + 2  # all kept
    many = api_message(client, "many")
    shown = [report["providerStatus"] for report in many["statusHistory"]]
    assert shown == [f"sent-{number}" for number in range(3, REPORTS)]  # the newest, oldest first
    assert many["statusHistoryTruncated"] is True
    by_id = client.get(f"/api/v1/messages/{many['id']}", headers=A).get_json()
    assert (len(by_id["statusHistory"]), by_id["statusHistoryTruncated"]) == (STATUS_HISTORY_SHOWN, True)
    few = api_message(client, "few")
    assert (len(few["statusHistory"]), few["statusHistoryTruncated"]) == (2, False)


def test_a_push_delivery_of_the_message_carries_the_same(client, runtime):
    send_reports(client, "many", REPORTS)
    with runtime.db.reading() as session:
        last = session.execute(sa.select(EVENTS).order_by(EVENTS.c.id.desc()).limit(1)).all()
        bodies = render_payloads(session, last, runtime.links.attachment_url)
    message = json.loads(bodies[last[0].id])["data"]
    assert (len(message["statusHistory"]), message["statusHistoryTruncated"]) == (STATUS_HISTORY_SHOWN, True)
    assert message["statusHistory"][-1]["providerStatus"] == f"sent-{REPORTS - 1}"
