"""The console's push delivery pages and actions: the endpoints with their health, backlog, last attempt
and counts; an endpoint's deliveries with every attempt, filtered and paged; enabling an endpoint the
service disabled, retrying its failed deliveries and resending one, each through delivery/'s own
operations to the loopback receiver of the delivery tests (which verifies every request), audited, for
admins only and within the action limit; another tenant's endpoint not found; hostile values refused."""

from __future__ import annotations

import html as html_text
import re

import pytest
import sqlalchemy as sa

from tests.console.conftest import (
    ADMIN,
    ADMIN_A,
    DELIVERY_SETTINGS,
    VIEWER,
    csrf_token,
    delivery_resolver,
    post_form,
    sign_in,
)
from tests.delivery.conftest import A, B, listen
from tests.fixtures.app import STANDARD_SECRET, STANDARD_SECRET_B
from tests.support.plans import numbers, plan, rows_thrown_away, statements_sent
from tests.support.standard import inbound_body, post_standard, status_body
from webhook_service.database.tables import DELIVERIES, DELIVERY_ATTEMPTS, AuditEntry
from webhook_service.delivery import overview

SCRIPT = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


@pytest.fixture
def settings_overrides():
    return DELIVERY_SETTINGS


@pytest.fixture
def resolver():
    return delivery_resolver()


def gone(client, runtime, receiver, count: int = 2, path: str = "/gone", tenant: str = "A") -> dict:
    """An endpoint that answered its first attempt 410 Gone: disabled, with `count` failed deliveries (the
    first attempted, the others given up unattempted)."""
    headers, connection, secret = (A, "main", STANDARD_SECRET) if tenant == "A" else (B, "other", STANDARD_SECRET_B)
    endpoint = listen(client, receiver, path, headers)
    receiver.answer(path, 410, f"gone {SCRIPT}".encode())
    for number in range(count):
        post_standard(client, inbound_body(f"{path}-{number}"), connection=connection, secret=secret)
    assert runtime.deliveries.drain(endpoint["id"]) == {"disabled": 1}
    return endpoint


def delivery_ids(runtime, endpoint: dict, column: sa.Column = DELIVERIES.c.id) -> list[int]:
    """The endpoint's deliveries (their `column`: ids, or their events' ids), oldest event first."""
    with runtime.db.reading() as session:
        query = sa.select(column).where(DELIVERIES.c.endpoint_id == endpoint["id"])
        return list(session.scalars(query.order_by(DELIVERIES.c.event_id)))


def listed(client, url: str) -> list[int]:
    """The event ids of the deliveries an endpoint's page lists, in its order."""
    response = client.get(url)
    assert response.status_code == 200, response.get_data(as_text=True)
    return [
        int(i)
        for i in re.findall(r'<tr class="delivery">\s*<td class="num">(\d+)</td>', response.get_data(as_text=True))
    ]


def row_of(page_html: str, endpoint: dict) -> str:
    [row] = [row for row in page_html.split("<tr") if endpoint["id"] in row]
    return row


def audited(runtime) -> list[tuple[str, str, str | None, str, str]]:
    with runtime.db.reading() as session:
        rows = session.scalars(sa.select(AuditEntry).where(AuditEntry.action != "sign_in").order_by(AuditEntry.id))
        return [(row.action, row.target_type, row.target_id, row.result, row.detail) for row in rows]


def test_the_endpoints_page_shows_health_backlog_last_attempt_and_counts(admin, client, runtime, receiver):
    ours = listen(client, receiver, "/a")
    receiver.answer("/a", 410, f"gone {SCRIPT}".encode())
    post_standard(client, inbound_body("m-1"))
    post_standard(client, status_body("m-1", "delivered"))
    assert runtime.deliveries.drain(ours["id"]) == {"disabled": 1}
    theirs = listen(client, receiver, "/b", B, eventTypes=["message.received"])
    receiver.answer("/b", 200, b"thanks")
    post_standard(client, inbound_body("b-1"), connection="other", secret=STANDARD_SECRET_B)
    assert runtime.deliveries.drain(theirs["id"]) == {"delivered": 1}
    post_standard(client, inbound_body("b-2"), connection="other", secret=STANDARD_SECRET_B)  # not yet taken

    listing = admin.get("/console/endpoints").get_data(as_text=True)
    mine, other = row_of(listing, ours), row_of(listing, theirs)
    assert "disabled" in mine and "The endpoint answered 410 Gone." in mine and "HTTP 410" in mine
    assert '?state=failed">2</a>' in mine and '?state=delivered">0</a>' in mine and "oldest" not in mine
    assert "enabled" in other and "HTTP 200" in other and '?state=delivered">1</a>' in other
    assert "message.received" in other and "0 pending" in other and "oldest" in other  # b-2 waits in the feed

    url = f"/console/endpoints/{ours['id']}"
    page = admin.get(url).get_data(as_text=True)
    # The receiver's answer, as text: a page never runs what a receiver says.
    assert f"gone {ESCAPED}" in page and SCRIPT not in page
    assert (
        "HTTP 410" in page and "endpoint_disabled" in page and "Enable again" in page and "Resend</button>" not in page
    )
    assert f"evt_{listed(admin, url)[0]}_{ours['id']}" in page  # the webhook-id a receiver logs
    everything = listed(admin, url)
    assert len(everything) == 2 and everything == sorted(everything, reverse=True)
    assert listed(admin, f"{url}?state=failed") == everything
    assert listed(admin, f"{url}?state=delivered") == []
    [status_event] = listed(admin, f"{url}?type=message.status")
    assert listed(admin, f"{url}?type=message.received&state=failed") == [e for e in everything if e != status_event]
    assert "No delivery matches." in admin.get(f"{url}?state=pending").get_data(as_text=True)


def test_counts_stop_at_their_cap_and_read_no_further(admin, client, runtime, receiver, monkeypatch):
    """An endpoint's deliveries grow with every event; counting them all outlasted the statement timeout
    on a busy service. Each state is counted up to COUNT_CAP (here 3) and shown as "3+" past it, and on
    PostgreSQL no step of the count's plan reads more of the index than that."""
    monkeypatch.setattr(overview, "COUNT_CAP", 3)
    endpoint = gone(client, runtime, receiver, count=5)
    with statements_sent(runtime.db.engine, lambda statement: "FROM deliveries" in statement) as sent:
        listing = admin.get("/console/endpoints").get_data(as_text=True)
    page = admin.get(f"/console/endpoints/{endpoint['id']}").get_data(as_text=True)
    row = row_of(listing, endpoint)
    assert '?state=failed">3+</a>' in row and '?state=delivered">0</a>' in row and "0 pending" in row
    assert "3+ failed</a>" in page, page
    if runtime.db.dialect == "postgresql":
        [counting] = [(statement, parameters) for statement, parameters in sent if "count(" in statement]
        with runtime.db.engine.connect() as connection:
            lines = plan(connection, *counting, analyze=True)
            connection.rollback()
        read = [
            int(rows) for line in lines if "on deliveries" in line for rows in re.findall(r"actual rows=(\d+)", line)
        ]
        assert read and max(read) <= 4, lines


def _attempts_of_other_events(runtime, endpoint_id: str, count: int) -> None:
    """`count` attempts of the endpoint, newer than any it has, for events that are not its (as a busy
    endpoint's months of deliveries are)."""
    with runtime.db.engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO delivery_attempts (endpoint_id, event_id, attempt, attempted_at, outcome, http_status,"
                f" latency_ms) SELECT :endpoint, 1000000 + n, 1, CURRENT_TIMESTAMP, 'delivered', 200, 5 FROM ({numbers(runtime.db.dialect)}) AS s"
            ),
            {"endpoint": endpoint_id, "count": count},
        )
        if runtime.db.dialect == "postgresql":
            connection.exec_driver_sql("ANALYZE delivery_attempts")


def test_the_attempts_of_old_events_are_found_by_their_index(admin, client, runtime, receiver):
    """An endpoint's page of failed deliveries, and the attempts API's event filter, ask for the attempts
    of events that may be old, or have none (given up when the endpoint was disabled). By the (endpoint_id,
    id) index those were found reading every newer attempt of the endpoint; migration 0013 indexes them by
    event."""
    endpoint = gone(client, runtime, receiver, count=2)
    first_event = delivery_ids(runtime, endpoint, DELIVERIES.c.event_id)[0]
    _attempts_of_other_events(runtime, endpoint["id"], 20_000)
    wanted = lambda statement: "FROM delivery_attempts" in statement and "event_id IN" in statement  # noqa: E731
    with statements_sent(runtime.db.engine, wanted) as sent:
        page = admin.get(f"/console/endpoints/{endpoint['id']}?state=failed").get_data(as_text=True)
        found = client.get(
            f"/api/v1/endpoints/{endpoint['id']}/attempts", headers=A, query_string={"eventId": str(first_event)}
        ).get_json()["attempts"]
    assert "HTTP 410" in page and [attempt["httpStatus"] for attempt in found] == [410]
    assert len(sent) == 2
    with runtime.db.engine.connect() as connection:
        for statement, parameters in sent:
            lines = plan(connection, statement, parameters, analyze=True)
            if runtime.db.dialect == "postgresql":
                assert rows_thrown_away(lines) < 100, lines
            else:
                assert any("ix_delivery_attempts_endpoint_id_event_id" in line for line in lines), lines
        connection.rollback()


def test_deliveries_come_fifty_a_page_newest_first_with_the_filters_kept(admin, client, runtime, receiver):
    endpoint = gone(client, runtime, receiver, count=51)
    url = f"/console/endpoints/{endpoint['id']}?state=failed"
    page = admin.get(url).get_data(as_text=True)
    first = listed(admin, url)
    assert len(first) == 50 and first == sorted(first, reverse=True)
    older = html_text.unescape(re.search(r'href="([^"]+)">Older', page).group(1))
    assert "state=failed" in older and f"before={first[-1]}" in older
    assert listed(admin, older) == [first[-1] - 1]
    assert "Older" not in admin.get(older).get_data(as_text=True)


def test_enable_again_retry_all_failed_and_resend_deliver_with_the_same_webhook_id(admin, client, runtime, receiver):
    endpoint = gone(client, runtime, receiver)
    receiver.answer("/gone", 204)
    url = f"/console/endpoints/{endpoint['id']}"
    first, second = delivery_ids(runtime, endpoint)

    # While it is disabled, nothing is resent.
    assert post_form(admin, f"{url}/deliveries/{first}/resend", page=url).status_code == 303
    assert "the endpoint is disabled; enable it first" in admin.get(url).get_data(as_text=True)
    assert len(receiver.requests("/gone")) == 1

    response = post_form(admin, f"{url}/enable", page=url)
    assert response.status_code == 303 and response.headers["Location"].endswith(url)
    page = admin.get(url).get_data(as_text=True)
    assert "enabled again (it was disabled: The endpoint answered 410 Gone.)" in page and "Retry all 2 failed" in page
    assert client.get(f"/api/v1/endpoints/{endpoint['id']}", headers=A).get_json()["enabled"] is True

    # The queue runs the endpoint's turn as soon as it is woken: both reach the receiver.
    post_form(admin, f"{url}/retry-failed", page=url)
    assert "2 failed deliveries queued for another attempt" in admin.get(url).get_data(as_text=True)
    gone_answered, *retried = receiver.wait_for(3, "/gone")
    assert all(r.verified for r in retried)
    # In feed order; the first is the event that was answered 410, with the webhook-id it had then.
    assert retried[0].headers["webhook-id"] == gone_answered.headers["webhook-id"] != retried[1].headers["webhook-id"]
    assert listed(admin, f"{url}?state=delivered") == listed(admin, url)

    # Resending a delivered event: another attempt, with the webhook-id it had.
    post_form(admin, f"{url}/deliveries/{first}/resend", page=url)
    assert "queued to be sent again as evt_" in admin.get(url).get_data(as_text=True)
    resent = receiver.wait_for(4, "/gone")[-1]
    assert resent.verified and resent.headers["webhook-id"] == gone_answered.headers["webhook-id"]
    with runtime.db.reading() as session:
        outcomes = session.execute(
            sa.select(DELIVERY_ATTEMPTS.c.event_id, DELIVERY_ATTEMPTS.c.outcome).order_by(DELIVERY_ATTEMPTS.c.id)
        ).all()
    assert [outcome for _, outcome in outcomes] == ["disabled", "delivered", "delivered", "delivered"]
    assert outcomes[0].event_id == outcomes[-1].event_id

    assert [row[:4] for row in audited(runtime)] == [
        ("resend", "delivery", str(first), "refused"),
        ("enable", "endpoint", endpoint["id"], "ok"),
        ("retry_failed", "endpoint", endpoint["id"], "ok"),
        ("resend", "delivery", str(first), "ok"),
    ]
    assert str(second) not in [row[2] for row in audited(runtime)]
    assert f"endpoint {endpoint['id']}</a>" in admin.get("/console/audit").get_data(as_text=True)


def test_a_pending_delivery_is_not_resent_and_an_endpoint_its_owner_disabled_stays_so(admin, client, runtime, receiver):
    endpoint = listen(client, receiver)
    receiver.answer("/hook", 500, b"busy")
    post_standard(client, inbound_body("m-1"))
    assert runtime.deliveries.drain(endpoint["id"]) == {"retry": 1}
    url = f"/console/endpoints/{endpoint['id']}"
    [pending] = delivery_ids(runtime, endpoint)
    assert "Resend</button>" not in admin.get(url).get_data(as_text=True)
    post_form(admin, f"{url}/deliveries/{pending}/resend", page=url)
    assert "it is pending, its next attempt is on its way" in admin.get(url).get_data(as_text=True)

    client.patch(f"/api/v1/endpoints/{endpoint['id']}", json={"enabled": False}, headers=A)
    page = admin.get(url).get_data(as_text=True)
    assert "Its owner disabled it: they enable it again through the API." in page and "Enable again" not in page
    post_form(admin, f"{url}/enable", page=url)
    assert "not enabled: Its owner disabled it" in admin.get(url).get_data(as_text=True)
    assert client.get(f"/api/v1/endpoints/{endpoint['id']}", headers=A).get_json()["enabled"] is False
    assert [row[3] for row in audited(runtime)] == ["refused", "refused"] and len(receiver.requests()) == 1


def test_another_tenants_endpoint_is_not_found_and_its_deliveries_not_shown(client, runtime, receiver):
    theirs = gone(client, runtime, receiver, path="/b", tenant="B")
    ours = listen(client, receiver, "/a")
    [their_delivery, _] = delivery_ids(runtime, theirs)
    sign_in(client, ADMIN_A)
    listing = client.get("/console/endpoints").get_data(as_text=True)
    assert ours["id"] in listing and theirs["id"] not in listing and receiver.url("/b") not in listing
    base = f"/console/endpoints/{theirs['id']}"
    for url in (base, f"{base}?state=failed"):
        assert client.get(url).status_code == 404, url
    for url in (
        f"{base}/enable",
        f"{base}/retry-failed",
        f"{base}/deliveries/{their_delivery}/resend",
        f"/console/endpoints/{ours['id']}/deliveries/{their_delivery}/resend",  # their delivery, under ours
    ):
        assert post_form(client, url).status_code == 404, url
    assert client.get(f"/api/v1/endpoints/{theirs['id']}", headers=B).get_json()["enabled"] is False
    assert audited(runtime) == [] and len(receiver.requests("/b")) == 1


def test_a_viewer_is_refused_and_audited_and_a_form_without_its_token_changes_nothing(client, runtime, receiver):
    endpoint = gone(client, runtime, receiver)
    [first, _] = delivery_ids(runtime, endpoint)
    url = f"/console/endpoints/{endpoint['id']}"
    sign_in(client, VIEWER)
    page = client.get(url).get_data(as_text=True)
    assert "Viewers cannot resend, retry or enable." in page and "Enable again" not in page
    for action in ("enable", "retry-failed", f"deliveries/{first}/resend"):
        response = post_form(client, f"{url}/{action}", page=url)
        assert response.status_code == 403 and "only admins" in response.get_data(as_text=True), action
    assert [row[1:] for row in audited(runtime)] == [
        ("endpoint", endpoint["id"], "refused", "viewer"),
        ("endpoint", endpoint["id"], "refused", "viewer"),
        ("delivery", str(first), "refused", "viewer"),
    ]

    client.post("/console/logout", data={"csrf_token": csrf_token(client.get("/console/").get_data(as_text=True))})
    sign_in(client, ADMIN)
    for data in ({}, {"csrf_token": "forged"}):
        response = client.post(f"{url}/enable", data=data)
        assert response.status_code == 400 and "Nothing was changed" in response.get_data(as_text=True)
    assert client.get(f"/api/v1/endpoints/{endpoint['id']}", headers=A).get_json()["enabled"] is False
    assert [row[0] for row in audited(runtime)][3:] == ["sign_out"]  # nothing done, nothing recorded


def test_bad_filters_and_cursors_are_400_pages_and_odd_ids_404(admin, client, receiver):
    endpoint = listen(client, receiver)
    url = f"/console/endpoints/{endpoint['id']}"
    for query, named in (
        ("state=exploded", "state: use one of delivered, failed, pending"),
        ("state=%00", "state"),
        ("type=message.deleted", "type: use one of"),
        ("before=abc", "before: expected a whole number"),
        ("before=-1", "before: expected a whole number"),
        ("before=" + "9" * 40, "before: at most 18 characters"),
    ):
        response = admin.get(f"{url}?{query}")
        assert response.status_code == 400 and "text/html" in response.headers["Content-Type"], query
        assert named in response.get_data(as_text=True), query
    for odd in ("nope", "z" * 500, "%00", "<script>"):
        response = admin.get(f"/console/endpoints/{odd}")
        assert response.status_code == 404 and SCRIPT not in response.get_data(as_text=True), odd
    for action in ("deliveries/1/resend", "deliveries/" + "9" * 30 + "/resend", "deliveries/x/resend", "explode"):
        assert post_form(admin, f"{url}/{action}").status_code == 404, action


class TestActionLimit:
    @pytest.fixture
    def settings_overrides(self):
        return {**DELIVERY_SETTINGS, "console": {"action_limit_per_operator": "2/minute"}}

    def test_actions_past_the_limit_are_429_and_audited(self, admin, client, runtime, receiver):
        endpoint = listen(client, receiver)
        url = f"/console/endpoints/{endpoint['id']}"
        for _ in range(2):
            assert post_form(admin, f"{url}/retry-failed", page=url).status_code == 303
        response = post_form(admin, f"{url}/enable", page=url)
        assert response.status_code == 429 and response.headers["Retry-After"] == "60"
        assert "Nothing was done" in response.get_data(as_text=True)
        assert audited(runtime)[-1][:5] == ("enable", "endpoint", endpoint["id"], "refused", "rate limited")
        # Counted per operator: another admin still acts.
        other = client.application.test_client()
        sign_in(other, ADMIN_A)
        assert post_form(other, f"{url}/retry-failed", page=url).status_code == 303
