"""The console's actions, each through the intake's or the pipeline's own operation and each audited:
replay (signature checked again, or trusted), discard, bulk actions on ticked entries or on a filter's
selection, and retrying attachments one by one or by reason, through to a stored blob."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from tests.console.conftest import ACTION_SETTINGS, post_form
from tests.fixtures.app import TENANT_A, TENANT_B, base_test_config
from tests.fixtures.media_server import loopback_resolver
from tests.media import samples
from tests.support.spool import spooled_request
from tests.support.standard import inbound_body, post_standard
from webhook_service.database.tables import Attachment, AuditEntry, Message, QuarantinedRequest


@pytest.fixture
def settings_overrides():
    return ACTION_SETTINGS


@pytest.fixture
def resolver():
    return loopback_resolver()


def _entries(runtime) -> list[QuarantinedRequest]:
    with runtime.db.reading() as session:
        return list(session.scalars(sa.select(QuarantinedRequest).order_by(QuarantinedRequest.id)))


def _audit(runtime) -> list[tuple[str, str, str | None, str]]:
    with runtime.db.reading() as session:
        rows = session.scalars(sa.select(AuditEntry).where(AuditEntry.action != "sign_in").order_by(AuditEntry.id))
        return [(row.action, row.target_type, row.target_id, row.result) for row in rows]


def _message_count(runtime) -> int:
    with runtime.db.reading() as session:
        return session.scalar(sa.select(sa.func.count()).select_from(Message))


def test_a_trusted_replay_stores_the_message_and_opens_it(admin, client, runtime):
    # Refused while the sender used a secret this connection does not know (e.g. before a rotation).
    post_standard(client, inbound_body("r-1", text="replay me"), secret="wrong")
    [entry] = _entries(runtime)
    checked = post_form(admin, f"/console/quarantine/{entry.id}/replay", page=f"/console/quarantine/{entry.id}")
    assert checked.status_code == 303 and checked.headers["Location"].endswith(f"/console/quarantine/{entry.id}")
    assert "Still refused: 401 invalid_signature" in admin.get(checked.headers["Location"]).get_data(as_text=True)
    assert _message_count(runtime) == 0

    trusted = post_form(admin, f"/console/quarantine/{entry.id}/replay_trusted", page=f"/console/quarantine/{entry.id}")
    assert trusted.status_code == 303 and "/console/messages/" in trusted.headers["Location"]
    page = admin.get(trusted.headers["Location"]).get_data(as_text=True)
    assert "replay me" in page and f"Replayed entry {entry.id}: stored." in page
    assert _entries(runtime)[0].resolution == "replayed"
    assert _audit(runtime) == [
        ("replay", "quarantine", str(entry.id), "failed"),
        ("replay_trusted", "quarantine", str(entry.id), "ok"),
    ]
    # A resolved entry is not replayed twice.
    post_form(admin, f"/console/quarantine/{entry.id}/replay_trusted", page=f"/console/quarantine/{entry.id}")
    assert _message_count(runtime) == 1 and _audit(runtime)[-1][3] == "refused"


def test_a_replay_whose_body_was_not_kept_says_so(admin, client, runtime):
    too_large = b'{"type":"message.received","data":{"providerMessageId":"big","text":"' + b"x" * (2 << 20) + b'"}}'
    assert post_standard(client, too_large).status_code == 413
    [entry] = _entries(runtime)
    page = admin.get(f"/console/quarantine/{entry.id}").get_data(as_text=True)
    assert "Its body was not kept, so it cannot be replayed" in page and "/replay" not in page
    response = post_form(
        admin, f"/console/quarantine/{entry.id}/replay_trusted", page=f"/console/quarantine/{entry.id}"
    )
    shown = admin.get(response.headers["Location"]).get_data(as_text=True)
    assert "refused. Its body was not kept, so it cannot be replayed" in shown
    assert _entries(runtime)[0].resolved_at is None and _message_count(runtime) == 0


def test_discard_and_bulk_actions_on_ticked_entries_and_on_a_filter(admin, client, runtime):
    for number in range(4):
        post_standard(client, inbound_body(f"b-{number}"), secret="wrong")
    post_standard(client, b"{not json")
    first, second, third, fourth, unreadable = (entry.id for entry in _entries(runtime))

    assert post_form(admin, f"/console/quarantine/{first}/discard").status_code == 303
    # An id ticked twice (a form made by hand) is one entry: it was replayed again for each time.
    ticked = [str(second), str(third), str(second)]
    response = post_form(admin, "/console/quarantine/bulk", {"action": "replay_trusted", "ids": ticked})
    assert response.status_code == 303
    assert "replay trusted: 2 of 2 done." in admin.get("/console/quarantine").get_data(as_text=True)
    # Everything the filter selects (unresolved, reason invalid_json): the unreadable one only.
    post_form(admin, "/console/quarantine/bulk", {"action": "discard", "matching": "1", "reason": "invalid_json"})
    resolutions = {entry.id: entry.resolution for entry in _entries(runtime)}
    assert resolutions == {
        first: "discarded",
        second: "replayed",
        third: "replayed",
        fourth: None,
        unreadable: "discarded",
    }
    assert _message_count(runtime) == 2
    assert [row[0] for row in _audit(runtime)] == ["discard", "replay_trusted", "replay_trusted", "discard"]


@pytest.mark.parametrize(
    ("form", "named"),
    [
        ({"action": "explode", "ids": ["1"]}, "action"),
        ({"action": "discard", "ids": ["1; drop"]}, "ids"),
        ({}, "action"),
    ],
)
def test_bad_bulk_forms_are_400(admin, form, named):
    response = post_form(admin, "/console/quarantine/bulk", form)
    assert response.status_code == 400 and named in response.get_data(as_text=True)


def test_a_failed_attachment_retried_from_its_message_page_ends_stored(admin, client, runtime, media_server):
    jpeg = samples.jpeg()
    url = media_server.fail("/photo.jpg", 503, times=1, then=jpeg, content_type="image/jpeg")
    post_standard(client, inbound_body("m-retry", attachments=[{"url": url, "contentType": "image/jpeg"}]))
    with runtime.db.reading() as session:
        attachment = session.scalars(sa.select(Attachment)).one()
        message_id = session.scalars(sa.select(Message.id)).one()
    assert attachment.status == "failed"
    page = admin.get(f"/console/messages/{message_id}").get_data(as_text=True)
    assert "Retry</button>" in page and attachment.reason_code in page

    response = post_form(admin, f"/console/attachments/{attachment.id}/retry", page=f"/console/messages/{message_id}")
    assert response.status_code == 303 and response.headers["Location"].endswith(f"/console/messages/{message_id}")
    with runtime.db.reading() as session:
        assert session.get(Attachment, attachment.seq).status == "stored"
    page = admin.get(f"/console/messages/{message_id}")
    html = page.get_data(as_text=True)
    assert "<img src=" in html and "/media/" in html and "queued for another attempt" in html
    # The thumbnail's signed URL serves the stored image, and the page's policy allows it.
    assert "img-src 'self' http://localhost" in page.headers["Content-Security-Policy"]
    thumbnail = html.split('<img src="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    served = client.get(thumbnail.removeprefix("http://localhost"))
    assert served.status_code == 200 and served.headers["Content-Type"] == "image/jpeg"
    assert _audit(runtime) == [("retry", "attachment", attachment.id, "ok")]


def test_retry_every_attachment_of_a_reason(admin, client, runtime, media_server):
    urls = [
        media_server.fail(f"/{n}.jpg", 503, times=1, then=samples.jpeg(), content_type="image/jpeg") for n in range(2)
    ]
    post_standard(client, inbound_body("m-many", attachments=[{"url": url} for url in urls]))
    with runtime.db.reading() as session:
        [reason] = set(session.scalars(sa.select(Attachment.reason_code)))
    response = post_form(admin, "/console/attachments/retry-reason", {"reason": reason}, page="/console/attachments")
    assert response.status_code == 303
    with runtime.db.reading() as session:
        assert set(session.scalars(sa.select(Attachment.status))) == {"stored"}
    assert [row[3] for row in _audit(runtime)] == ["ok", "ok"]
    assert "Retry</button>" not in admin.get("/console/attachments").get_data(as_text=True)


def test_one_attachment_retried_from_the_attachments_page(admin, client, runtime, media_server):
    url = media_server.fail("/one.jpg", 503, times=1, then=samples.jpeg(), content_type="image/jpeg")
    post_standard(client, inbound_body("m-one", attachments=[{"url": url}]))
    listing = admin.get("/console/attachments").get_data(as_text=True)
    [attachment_id] = re.findall(r"/console/attachments/([0-9a-f-]{36})/retry", listing)
    assert (
        post_form(admin, f"/console/attachments/{attachment_id}/retry", page="/console/attachments").status_code == 303
    )
    with runtime.db.reading() as session:
        assert session.scalars(sa.select(Attachment.status)).one() == "stored"
    assert "No failed or rejected attachment." in admin.get("/console/attachments").get_data(as_text=True)


class TestActionLimit:
    """Every action counts against console.action_limit_per_operator, one per click, however many
    entries it acts on; past it the action is a 429, does nothing and is audited as refused."""

    @pytest.fixture
    def settings_overrides(self):
        return {**ACTION_SETTINGS, "console": {"action_limit_per_operator": "2/minute"}}

    def test_quarantine_and_attachment_actions_past_the_limit_are_429(self, admin, client, runtime):
        for number in range(3):
            post_standard(client, inbound_body(f"limit-{number}"), secret="wrong")
        first, second, third = (entry.id for entry in _entries(runtime))
        post_standard(client, inbound_body("limit-media", attachments=[{"url": "http://127.0.0.1/a.jpg"}]))
        with runtime.db.reading() as session:
            attachment = session.scalars(sa.select(Attachment)).one()
        assert post_form(admin, f"/console/quarantine/{first}/discard").status_code == 303
        assert (
            post_form(admin, "/console/quarantine/bulk", {"action": "discard", "ids": [str(second)]}).status_code == 303
        )
        for response in (
            post_form(admin, f"/console/quarantine/{third}/discard"),
            post_form(admin, "/console/quarantine/bulk", {"action": "discard", "ids": [str(third)]}),
            post_form(admin, "/console/attachments/retry-reason", {"reason": "http_404"}),
            # One attachment's retry from its message page was not counted at all.
            post_form(admin, f"/console/attachments/{attachment.id}/retry"),
        ):
            assert response.status_code == 429 and response.headers["Retry-After"] == "60"
        assert {entry.id: entry.resolution for entry in _entries(runtime)}[third] is None  # nothing done
        with runtime.db.reading() as session:
            unchanged = session.scalars(sa.select(Attachment).where(Attachment.id == attachment.id)).one()
        assert (unchanged.status, unchanged.attempts) == (attachment.status, attachment.attempts)
        assert _audit(runtime)[-4:] == [
            ("discard", "quarantine", str(third), "refused"),
            ("discard", "quarantine", None, "refused"),
            ("retry", "attachment", None, "refused"),
            ("retry", "attachment", attachment.id, "refused"),
        ]


class TestTenantChanged:
    """A spooled request quarantined as `tenant_changed` (its connection, standard/main, moved from tenant
    A, for which it arrived, to tenant B): not replayed while the connection is B's, which would make it
    B's message."""

    @pytest.fixture
    def settings_overrides(self, tmp_path):
        connections = base_test_config(tmp_path, "")["connections"]
        moved = [{**c, "tenant": TENANT_B} if c["name"] == "main" else c for c in connections]
        return {**ACTION_SETTINGS, "connections": moved}

    def test_a_replay_is_refused_and_changes_nothing(self, admin, runtime):
        assert runtime.intake.store_spooled(spooled_request("m-moved")).reason_code == "tenant_changed"
        [entry] = _entries(runtime)
        response = post_form(
            admin, f"/console/quarantine/{entry.id}/replay_trusted", page=f"/console/quarantine/{entry.id}"
        )
        shown = admin.get(response.headers["Location"]).get_data(as_text=True)
        assert (
            f"refused. Not replayed, its connection standard/main now belongs to tenant {TENANT_B}, not to tenant"
            f" {TENANT_A}, for which it arrived" in shown
        )
        assert _entries(runtime)[0].resolved_at is None and _message_count(runtime) == 0
        assert _audit(runtime) == [("replay_trusted", "quarantine", str(entry.id), "refused")]
