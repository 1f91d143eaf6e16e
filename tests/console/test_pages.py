"""What the console's pages show, from the same queries the API and CLI use: the overview's counts and
charts, the request log's filters and detail, messages with their timeline and attachments, and the
attachments grouped by reason. Bad filter values are precise 400s."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from tests.api.test_status_history_shown import REPORTS, api_message, send_reports
from tests.console.conftest import VIEWER, sign_in
from tests.support.standard import inbound_body, post_standard, standard_headers, status_body
from webhook_service.database.tables import Attachment, RequestLogEntry


def _ids(html: str, kind: str) -> list[str]:
    return re.findall(rf"/console/{kind}/([0-9a-f-]+)\"", html)


def test_the_overview_counts_requests_per_connection_and_outcome(admin, client):
    post_standard(client, inbound_body("o-1"))
    post_standard(client, inbound_body("o-1"))  # a duplicate
    post_standard(client, inbound_body("o-2"), secret="wrong")
    client.post("/webhooks/nosuch", data=b"{}")
    page = admin.get("/console/").get_data(as_text=True)
    assert page.count("<svg") >= 4  # two charts and a bar per row
    assert "Last hour, per 5 minutes: 4 requests" in page and "Last 24 hours, per hour: 4 requests" in page
    assert 'class="outcome-accepted"' in page and 'class="outcome-unauthorized"' in page
    assert "1 unauthorized" in page and "1 not found" in page
    assert "<strong>1</strong><span>in quarantine</span>" in page
    assert "database: ok" in page and "blobStore: ok" in page


def test_the_request_log_filters_by_outcome_ids_and_phone_number(admin, client):
    accepted = post_standard(client, inbound_body("f-1", sender="+15550001111"))
    post_standard(client, inbound_body("f-2", sender="+15550002222"))
    refused = post_standard(client, inbound_body("f-3"), secret="wrong")

    def listed(query: str) -> list[str]:
        response = admin.get(f"/console/requests?{query}")
        assert response.status_code == 200, response.get_data(as_text=True)
        return re.findall(r"<code>([0-9a-f]{32})</code>", response.get_data(as_text=True))

    assert listed("") == [
        refused.headers["X-Request-Id"],
        *listed("provider_message_id=f-2"),
        accepted.headers["X-Request-Id"],
    ]
    assert listed("outcome=unauthorized") == [refused.headers["X-Request-Id"]]
    assert listed(f"request_id={accepted.headers['X-Request-Id']}") == [accepted.headers["X-Request-Id"]]
    assert listed("provider_message_id=f-1") == [accepted.headers["X-Request-Id"]]
    # Any way of writing the number finds it.
    for number in ("%2B15550001111", "(555)%20000-1111", "1-555-000-1111"):
        assert listed(f"number={number}") == [accepted.headers["X-Request-Id"]], number
    assert listed("since=2999-01-01T00:00") == []
    assert len(listed("until=2999-01-01T00:00:00Z&connection=main&provider=standard")) == 3


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("outcome=exploded", "outcome"),
        ("since=yesterday", "since"),
        ("before=12abc", "before"),
        ("before=" + "9" * 40, "before"),
        ("provider=" + "p" * 300, "provider"),
    ],
)
def test_bad_filter_values_are_400_naming_them(admin, query, named):
    response = admin.get(f"/console/requests?{query}")
    assert response.status_code == 400 and named in response.get_data(as_text=True)


def test_bad_message_filters_are_400(admin):
    assert admin.get("/console/messages?status=sideways").status_code == 400
    assert admin.get("/console/messages?direction=up").status_code == 400
    assert admin.get("/console/attachments?status=pending").status_code == 400


def test_a_request_page_shows_redacted_headers_the_body_and_what_it_produced(admin, client, runtime):
    body = inbound_body("d-1", text="hello there")
    headers = {**standard_headers(body), "Authorization": "Bearer hunter2", "X-Trace": "t-1"}
    client.post("/webhooks/standard/main?token=abc", data=body, headers=headers, content_type="application/json")
    with runtime.db.reading() as session:
        entry = session.scalars(sa.select(RequestLogEntry)).one()
    page = admin.get(f"/console/requests/{entry.id}").get_data(as_text=True)
    assert headers["webhook-signature"] not in page and "hunter2" not in page and "token=abc" not in page
    assert "t-1" in page and "[redacted]" in page
    assert "&#34;text&#34;: &#34;hello there&#34;" in page  # pretty-printed JSON, escaped
    assert f"/console/messages/{entry.message_ids[0]}" in page
    assert "message.received" in page  # its feed event
    assert "Genuine: verified" in page
    download = admin.get(f"/console/requests/{entry.id}/body")
    assert download.data == body and download.headers["Content-Type"] == "application/octet-stream"
    assert download.headers["Content-Disposition"].startswith("attachment")


def test_a_refused_request_page_links_its_quarantine_entry_and_back(admin, client, runtime):
    response = post_standard(client, inbound_body("d-2"), secret="wrong")
    with runtime.db.reading() as session:
        entry = session.scalars(sa.select(RequestLogEntry)).one()
    page = admin.get(f"/console/requests/{entry.id}").get_data(as_text=True)
    assert f"/console/quarantine/{entry.quarantine_id}" in page and "Not verified (invalid_signature)" in page
    quarantine_page = admin.get(f"/console/quarantine/{entry.quarantine_id}").get_data(as_text=True)
    assert response.headers["X-Request-Id"] in quarantine_page and f"/console/requests/{entry.id}" in quarantine_page


def test_list_pages_mask_phone_numbers_and_the_message_page_shows_them(admin, client):
    post_standard(client, inbound_body("n-1", sender="+15550009876", to=("+15551234567",)))
    listing = admin.get("/console/messages").get_data(as_text=True)
    assert "+15550009876" not in listing and "+15*******76" in listing
    assert "+15551234567" not in listing and "+15*******67" in listing
    for url in ("/console/", "/console/requests", "/console/quarantine", "/console/attachments", "/console/audit"):
        assert "+15550009876" not in admin.get(url).get_data(as_text=True), url
    [message_id] = _ids(listing, "messages")
    page = admin.get(f"/console/messages/{message_id}").get_data(as_text=True)
    assert "+15550009876" in page and "+15551234567" in page


def test_the_timeline_says_why_a_report_left_the_status_alone(admin, client):
    post_standard(client, status_body("t-1", "sent", occurred_at="2026-01-01T10:00:00Z"))
    post_standard(client, status_body("t-1", "delivered", occurred_at="2026-01-01T10:01:00Z"))
    post_standard(client, status_body("t-1", "sent", provider_status="sent-late", occurred_at="2026-01-01T10:00:30Z"))
    [message_id] = _ids(admin.get("/console/messages").get_data(as_text=True), "messages")
    page = admin.get(f"/console/messages/{message_id}").get_data(as_text=True)
    assert "sent-late" in page and "kept, status unchanged: the message was already delivered, a final state" in page
    assert page.count("kept, status unchanged") == 1
    assert "Known so far only from delivery reports." in page


def test_attachments_are_grouped_by_reason(admin, client, runtime):
    post_standard(
        client, inbound_body("a-1", attachments=[{"url": "http://127.0.0.1/x.jpg"}, {"url": "ftp://example.com/y.jpg"}])
    )
    with runtime.db.transaction() as session:
        for index, (status, code) in enumerate((("rejected", "blocked_address"), ("failed", "timeout"))):
            session.execute(
                sa.update(Attachment)
                .where(Attachment.index == index)
                .values(status=status, reason_code=code, reason=f"{code} for tests")
            )
    page = admin.get("/console/attachments").get_data(as_text=True)
    assert "blocked_address" in page and "timeout" in page and "Retry all timeout" in page
    only = admin.get("/console/attachments?reason=timeout").get_data(as_text=True)
    assert "timeout: timeout for tests" in only and "blocked_address: blocked_address for tests" not in only


def test_the_audit_log_pages(admin):
    assert "sign in" in admin.get("/console/audit").get_data(as_text=True)
    assert admin.get("/console/audit?before=1").status_code == 200
    assert admin.get("/console/audit?before=x").status_code == 400


def test_a_viewer_sees_the_same_pages(client):
    post_standard(client, inbound_body("v-1"))
    sign_in(client, VIEWER)
    for url in ("/console/", "/console/requests", "/console/messages", "/console/quarantine", "/console/attachments"):
        assert client.get(url).status_code == 200, url
    assert f"{VIEWER[0]} <small>(viewer, all tenants)" in client.get("/console/").get_data(as_text=True)


def test_the_overview_shows_attachments_their_reasons_the_backlog_and_the_queue(admin, client, runtime):
    # Nothing consumes the queue in these tests: the attachments wait, and their tasks with them.
    post_standard(
        client, inbound_body("o-mms", attachments=[{"url": f"https://cdn.example.com/{n}.jpg"} for n in range(4)])
    )
    with runtime.db.transaction() as session:
        session.execute(
            sa.update(Attachment).where(Attachment.index == 0).values(created_at=datetime.now(UTC) - timedelta(hours=3))
        )
        for index, (status, code) in enumerate((("failed", "timeout"), ("rejected", "too_large")), start=1):
            session.execute(
                sa.update(Attachment).where(Attachment.index == index).values(status=status, reason_code=code)
            )
        session.execute(sa.update(Attachment).where(Attachment.index == 3).values(status="stored"))
    waiting = runtime.queue.waiting()
    assert waiting >= 1
    page = admin.get("/console/").get_data(as_text=True)
    assert "<strong>1</strong><span>attachments failed (24 h)</span>" in page
    assert "<strong>1</strong><span>attachments pending, oldest 3 h 0 min</span>" in page
    assert f"<strong>{waiting}</strong><span>tasks in the download queue</span>" in page
    for state in ("pending", "stored", "rejected", "failed"):
        assert f'<span class="badge state-{state}">{state}</span> 1' in page, state
    assert ">timeout</a>: 1 failed" in page and ">too_large</a>: 1 rejected" in page


def test_the_request_log_pages_keep_their_filters(admin, client):
    for number in range(52):
        post_standard(client, inbound_body(f"p-{number}"), connection="open")
    post_standard(client, inbound_body("p-refused"), secret="wrong")

    def ids(html: str) -> list[str]:
        return re.findall(r"<code>([0-9a-f]{32})</code>", html)

    first = admin.get("/console/requests?outcome=accepted").get_data(as_text=True)
    assert len(ids(first)) == 50
    older = re.search(r'href="([^"]+)">Older', first).group(1).replace("&amp;", "&")
    assert "outcome=accepted" in older and "before=" in older
    second = admin.get(older).get_data(as_text=True)
    assert len(ids(second)) == 2 and not set(ids(second)) & set(ids(first))
    assert "Older" not in second and "Newest" in second


def test_messages_are_found_by_number_id_status_and_direction(admin, client):
    post_standard(client, inbound_body("s-1", sender="+15550001111"))
    post_standard(client, inbound_body("s-2", sender="+15550002222"))
    post_standard(client, status_body("s-out", "delivered"))

    def found(query: str) -> set[str]:
        response = admin.get(f"/console/messages?{query}")
        assert response.status_code == 200, query
        return set(re.findall(r"<code>(s-[a-z0-9]+)</code>", response.get_data(as_text=True)))

    assert found("") == {"s-1", "s-2", "s-out"}
    assert found("from=(555)%20000-2222") == {"s-2"}
    assert found("provider_message_id=s-1") == {"s-1"}
    assert found("status=delivered") == found("direction=outbound") == {"s-out"}
    assert found("direction=inbound&to=%2B15551234567") == {"s-1", "s-2"}
    assert found("since=2999-01-01T00:00") == set()


def test_a_request_page_shows_an_xml_body_indented(admin, client, runtime):
    xml = b'<?xml version="1.0"?><Message><From>+15550001111</From><Body>hi &amp; bye</Body></Message>'
    client.post("/webhooks/standard/open", data=xml, content_type="application/xml")
    with runtime.db.reading() as session:
        entry = session.scalars(sa.select(RequestLogEntry)).one()
    page = admin.get(f"/console/requests/{entry.id}").get_data(as_text=True)
    assert "XML, indented" in page
    assert "\n  &lt;From&gt;+15550001111&lt;/From&gt;\n  &lt;Body&gt;hi &amp;amp; bye&lt;/Body&gt;" in page


def test_a_message_with_more_reports_than_are_shown_says_so(admin, client):
    send_reports(client, "many", REPORTS)
    page = admin.get(f"/console/messages/{api_message(client, 'many')['id']}").get_data(as_text=True)
    assert "older reports not shown" in page
    assert "sent-2<" not in page and f"sent-{REPORTS - 1}<" in page
