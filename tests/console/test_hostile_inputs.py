"""What a caller sends is shown, never executed, and never breaks a page: script in a message's text, an
attachment's file name, a header value or a provider message id; a body that is not UTF-8; 1 MiB of
JSON; JSON nested beyond reason; XML with entities."""

from __future__ import annotations

import tracemalloc

import sqlalchemy as sa

from tests.console.conftest import csrf_token, post_form
from tests.support.standard import inbound_body, post_standard, standard_headers
from webhook_service.database.tables import Message, QuarantinedRequest, RequestLogEntry

SCRIPT = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


def _only(runtime, model):
    with runtime.db.reading() as session:
        return session.scalars(sa.select(model).order_by(model.id if hasattr(model, "id") else model.seq)).first()


def test_script_in_text_file_name_header_and_message_id_is_escaped(admin, client, runtime):
    body = inbound_body(
        f"id-{SCRIPT}",
        text=f"hi {SCRIPT}",
        attachments=[{"url": "https://cdn.example.com/a.jpg", "name": f"{SCRIPT}.jpg", "contentType": "image/jpeg"}],
    )
    headers = {**standard_headers(body), "X-Note": SCRIPT}
    assert (
        client.post("/webhooks/standard/main", data=body, headers=headers, content_type="application/json").status_code
        == 200
    )
    message = _only(runtime, Message)
    entry = _only(runtime, RequestLogEntry)
    pages = [
        f"/console/messages/{message.id}",
        "/console/messages",
        f"/console/requests/{entry.id}",
        "/console/requests",
        f"/console/requests?provider_message_id=id-{SCRIPT}",
    ]
    for url in pages:
        response = admin.get(url)
        html = response.get_data(as_text=True)
        assert response.status_code == 200 and SCRIPT not in html, url
    message_page = admin.get(pages[0]).get_data(as_text=True)
    assert f"hi {ESCAPED}" in message_page and f"{ESCAPED}.jpg" in message_page and f"id-{ESCAPED}" in message_page
    assert ESCAPED in admin.get(pages[2]).get_data(as_text=True)  # the header value


def test_script_in_a_refused_body_and_in_form_fields_is_escaped(admin, client, runtime):
    form = f"From=%2B15550001111&Body={SCRIPT}".encode()
    client.post("/webhooks/standard/main", data=form, content_type="application/x-www-form-urlencoded")
    entry = _only(runtime, QuarantinedRequest)
    html = admin.get(f"/console/quarantine/{entry.id}").get_data(as_text=True)
    assert SCRIPT not in html and ESCAPED in html and "Form fields" in html


def test_a_body_that_is_not_utf8_is_shown_escaped(admin, client, runtime):
    body = b'{"type":"message.received","data":{"text":"\xff\xfe\x00' + SCRIPT.encode() + b'"}}'
    client.post("/webhooks/standard/open", data=body, content_type="application/json")
    entry = _only(runtime, QuarantinedRequest)
    response = admin.get(f"/console/quarantine/{entry.id}")
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "Not valid UTF-8" in html and "\\xff\\xfe" in html and SCRIPT not in html
    assert admin.get(f"/console/quarantine/{entry.id}/body").data == body
    # The request log's page of the same request shows it the same way.
    log_entry = _only(runtime, RequestLogEntry)
    html = admin.get(f"/console/requests/{log_entry.id}").get_data(as_text=True)
    assert "Not valid UTF-8" in html and "\\xff\\xfe" in html and SCRIPT not in html and ESCAPED in html
    assert admin.get(f"/console/requests/{log_entry.id}/body").data == body


def test_a_mebibyte_of_json_is_shown_cut_with_a_note(admin, client, runtime):
    text = "x" * (1024 * 1024 - 200)
    body = inbound_body("big-json", text=text)
    assert len(body) <= runtime.settings.webhook_max_body_bytes
    assert post_standard(client, body).status_code == 200
    entry = _only(runtime, RequestLogEntry)
    response = admin.get(f"/console/requests/{entry.id}")
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "Showing the first 65,536 of" in html
    assert len(html) < 200_000
    message = _only(runtime, Message)
    assert admin.get(f"/console/messages/{message.id}").status_code == 200


def test_json_nested_beyond_reason_and_xml_entities_are_shown_as_text(admin, client, runtime):
    deep = b"[" * 50_000 + b"]" * 50_000
    client.post("/webhooks/standard/main", data=deep, headers=standard_headers(deep), content_type="application/json")
    bomb = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]><x>&b;</x>'
    client.post("/webhooks/standard/main", data=bomb, headers=standard_headers(bomb), content_type="application/xml")
    with runtime.db.reading() as session:
        ids = list(session.scalars(sa.select(QuarantinedRequest.id).order_by(QuarantinedRequest.id)))
    assert len(ids) == 2
    for entry_id in ids:
        response = admin.get(f"/console/quarantine/{entry_id}")
        assert response.status_code == 200 and "As text" in response.get_data(as_text=True)
    assert "aaaaaaaa" not in admin.get(f"/console/quarantine/{ids[1]}").get_data(as_text=True)


def test_unknown_ids_and_odd_paths_are_404_pages(admin):
    for url in (
        "/console/requests/999999",
        "/console/quarantine/999999",
        "/console/messages/" + "z" * 500,
        "/console/messages/%00",
        "/console/requests/1/body",
    ):
        response = admin.get(url)
        assert response.status_code == 404 and "text/html" in response.headers["Content-Type"], url
    assert admin.get("/console/requests/" + "9" * 30).status_code == 404
    # An action's too: NUL in a key was a 500 on PostgreSQL, which refuses it in a statement's text.
    for url in ("/console/attachments/%00/retry", "/console/attachments/a%00b/retry", "/console/endpoints/%00/enable"):
        assert post_form(admin, url).status_code == 404, url


def test_a_body_that_indents_to_megabytes_is_shown_as_received(admin, client, runtime):
    """60 KB of JSON nested 400 deep around 30,000 numbers was a 24 MB page (800 spaces before every
    number), XML alike; a form of 20,000 empty fields a table of as many rows."""
    bodies = [
        (("[" * 400 + ",".join(["1"] * 29_600) + "]" * 400).encode(), "application/json", "pretty-printed"),
        (("<a>" * 300 + "<b/>" * 10_000 + "</a>" * 300).encode(), "application/xml", "indented"),
        (b"&".join([b"a="] * 20_000), "application/x-www-form-urlencoded", "20,000 form fields"),
    ]
    for body, content_type, note in bodies:
        assert len(body) <= 64 * 1024
        client.post("/webhooks/standard/main", data=body, headers=standard_headers(body), content_type=content_type)
        entry = _only_newest(runtime)
        response = admin.get(f"/console/quarantine/{entry.id}")
        html = response.get_data(as_text=True)
        assert response.status_code == 200 and "Shown as received" in html and note in html, content_type
        assert len(html) < 400_000, content_type  # the body, escaped (< is &lt;), and the page around it
        assert admin.get(f"/console/quarantine/{entry.id}/body").data == body


def _only_newest(runtime) -> QuarantinedRequest:
    with runtime.db.reading() as session:
        return session.scalars(sa.select(QuarantinedRequest).order_by(QuarantinedRequest.id.desc())).first()


def test_large_bodies_are_not_all_held_by_the_quarantine_list_nor_a_bulk_action(admin, client, runtime):
    """The list read every entry's body to show its size: 50 MB a page with the default body limit, and
    250 MB (3.6 s on PostgreSQL) with webhook_max_body_bytes at 5 MiB; a bulk action held the bodies of
    all the entries it acts on (up to 200) until it was done."""
    body = inbound_body("large", text="x" * (1024 * 1024 - 300))
    for _ in range(6):
        post_standard(client, body, secret="wrong")
    admin.get("/console/quarantine?reason=none")  # the template compiled, outside the count
    response, peak = _with_peak_memory(lambda: admin.get("/console/quarantine"))
    assert response.status_code == 200 and response.get_data(as_text=True).count(f"{len(body)} B") == 6
    assert peak < 3 * 1024 * 1024
    token = csrf_token(response.get_data(as_text=True))
    form = {"action": "discard", "matching": "1", "csrf_token": token}
    response, peak = _with_peak_memory(lambda: admin.post("/console/quarantine/bulk", data=form))
    assert response.status_code == 303 and peak < 3 * 1024 * 1024
    assert "discard: 6 of 6 done." in admin.get("/console/quarantine").get_data(as_text=True)


def _with_peak_memory(call):
    """What `call` answers, and the most memory Python held meanwhile beyond what it held before."""
    tracemalloc.start()
    try:
        return call(), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
