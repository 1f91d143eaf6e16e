"""The console (and the API docs page) in a real browser: Debian's Chromium driven by Playwright against the app served over
loopback HTTP (`live_server`). Sign-in, the request log with an accepted and a refused request, a replay
from quarantine that becomes a stored message, a failed attachment retried until its thumbnail shows, an

pytestmark = pytest.mark.slow
endpoint disabled by a 410 enabled again and its failed deliveries sent, a viewer refused an action, a
POST without its CSRF token refused, another tenant's pages not found, and every page on a phone's
screen.

`scripts/test.sh` installs Chromium when it is missing; without it these tests skip on a laptop and fail
under CI=true, like the tests that need a server."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.console.conftest import ADMIN, ADMIN_A, ADMIN_B, DELIVERY_SETTINGS, VIEWER, delivery_resolver
from tests.delivery.conftest import listen
from tests.fixtures.app import STANDARD_SECRET_B
from tests.fixtures.services import service_unavailable
from tests.media import samples
from tests.support.standard import inbound_body, post_standard
from webhook_service.database.tables import Message, QuarantinedRequest

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        service_unavailable("Chromium", f"no executable at {CHROMIUM} (scripts/test.sh installs Debian's chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


# What a page load or a click may take: a CI machine stalled on its disk once took over 15 s to load the
# console's first page (some 50 ms here otherwise).
BROWSER_TIMEOUT_MS = 30_000
expect.set_options(timeout=BROWSER_TIMEOUT_MS)


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(BROWSER_TIMEOUT_MS)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def settings_overrides():
    return DELIVERY_SETTINGS


@pytest.fixture
def resolver():
    return delivery_resolver()


def sign_in(page: Page, base: str, operator: tuple[str, str]) -> None:
    page.goto(f"{base}/console/")
    expect(page).to_have_url(re.compile(r"/console/login"))
    page.fill("input[name=username]", operator[0])
    page.fill("input[name=password]", operator[1])
    page.click("button[type=submit]")
    expect(page.locator("header .who")).to_contain_text(operator[0])


def test_sign_in_and_the_request_log_with_an_accepted_and_a_refused_request(page, live_server, client):
    accepted = post_standard(client, inbound_body("b-accepted", text="hello from the browser test"))
    refused = post_standard(client, inbound_body("b-refused"), secret="wrong")
    page.goto(f"{live_server}/console/login")
    page.fill("input[name=username]", ADMIN[0])
    page.fill("input[name=password]", "not the password")
    page.click("button[type=submit]")
    expect(page.locator(".flash.error")).to_have_text("Wrong username or password.")
    sign_in(page, live_server, ADMIN)
    expect(page.locator("h1")).to_have_text("Overview")
    expect(page.locator("figure.chart svg rect.outcome-accepted").first).to_be_attached()

    page.click("nav >> text=Requests")
    rows = page.locator("table.list tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("unauthorized")
    expect(rows.nth(0)).to_contain_text(refused.headers["X-Request-Id"])
    expect(rows.nth(1)).to_contain_text("accepted")

    page.select_option("select[name=outcome]", "unauthorized")
    page.click("form.filters button[type=submit]")
    expect(rows).to_have_count(1)
    rows.nth(0).locator("a").first.click()
    expect(page.locator("dl.facts")).to_contain_text("Not verified (invalid_signature)")
    expect(page.locator("table.kv")).to_contain_text("[redacted]")
    page.click("text=quarantine entry #")
    expect(page.locator("h1")).to_contain_text("Quarantine entry")

    page.goto(f"{live_server}/console/requests?outcome=accepted")
    page.locator("table.list tbody tr a").first.click()
    expect(page.locator("h1")).to_contain_text(accepted.headers["X-Request-Id"])
    page.click("main a[href*='/console/messages/']")
    expect(page.locator("p.text")).to_have_text("hello from the browser test")


def test_a_replay_from_quarantine_becomes_a_stored_message(page, live_server, client, runtime):
    post_standard(client, inbound_body("b-replay", text="refused, then replayed"), secret="wrong")
    sign_in(page, live_server, ADMIN)
    page.click("nav >> text=Quarantine")
    page.locator("table.list tbody tr a").first.click()
    page.click("text=Replay, trusted")
    expect(page.locator(".flash.ok")).to_contain_text("stored")
    expect(page.locator("p.text")).to_have_text("refused, then replayed")
    with runtime.db.reading() as session:
        assert session.scalars(sa.select(QuarantinedRequest.resolution)).one() == "replayed"
    page.click("nav >> text=Audit")
    expect(page.locator("table.list tbody tr").first).to_contain_text("replay trusted")


def test_a_failed_attachment_retried_ends_stored_with_its_thumbnail(page, live_server, client, runtime, media_server):
    url = media_server.fail("/b.png", 503, times=1, then=samples.png((48, 32)), content_type="image/png")
    post_standard(
        client, inbound_body("b-retry", attachments=[{"url": url, "contentType": "image/png", "name": "b.png"}])
    )
    with runtime.db.reading() as session:
        message_id = session.scalars(sa.select(Message.id)).one()
    sign_in(page, live_server, ADMIN)
    page.goto(f"{live_server}/console/messages/{message_id}")
    expect(page.locator("article.attachment")).to_contain_text("failed")
    page.click("article.attachment button:has-text('Retry')")
    expect(page.locator(".flash.ok")).to_contain_text("queued for another attempt")
    thumbnail = page.locator("article.attachment img")
    expect(thumbnail).to_be_visible()
    # Loaded through its signed media URL, under the page's Content-Security-Policy.
    assert page.wait_for_function("img => img.complete && img.naturalWidth === 48", arg=thumbnail.element_handle())
    expect(page.locator("article.attachment")).to_contain_text("image/png")


# On SQLite only: the browser adds nothing the database changes; test_endpoints.py runs the actions on both.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_endpoint_disabled_by_a_410_is_enabled_again_and_its_failed_deliveries_sent(
    page, live_server, client, runtime, receiver
):
    endpoint = listen(client, receiver, "/browser")
    receiver.answer("/browser", 410, b"<b>gone</b>")
    for number in range(2):
        post_standard(client, inbound_body(f"b-push-{number}"))
    assert runtime.deliveries.drain(endpoint["id"]) == {"disabled": 1}
    receiver.answer("/browser", 204)
    sign_in(page, live_server, ADMIN)
    page.click("nav >> text=Endpoints")
    row = page.locator("table.list tbody tr").first
    expect(row).to_contain_text("The endpoint answered 410 Gone.")
    row.locator("a").first.click()
    page.click("details summary")
    expect(page.locator("details pre")).to_have_text("<b>gone</b>")  # the receiver's answer, as text
    page.click("button:has-text('Enable again')")
    expect(page.locator(".flash.ok")).to_contain_text("enabled again")
    page.click("button:has-text('Retry all 2 failed')")
    expect(page.locator(".flash.ok")).to_contain_text("2 failed deliveries queued for another attempt")
    expect(page.locator("tr.delivery .state-delivered")).to_have_count(2)
    assert len(receiver.wait_for(3, "/browser")) == 3


# What the browser shows, the same on either database (the console's own tests run on both): on one of
# them, to keep the suite's time.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_viewer_is_refused_an_action_and_a_post_without_csrf_is_refused(page, live_server, client, runtime):
    post_standard(client, inbound_body("b-viewer"), secret="wrong")
    with runtime.db.reading() as session:
        entry_id = session.scalars(sa.select(QuarantinedRequest.id)).one()
    sign_in(page, live_server, VIEWER)
    page.goto(f"{live_server}/console/quarantine/{entry_id}")
    expect(page.locator("main")).to_contain_text("Viewers cannot replay or discard")
    expect(page.locator("button:has-text('Discard')")).to_have_count(0)
    token = page.locator("header input[name=csrf_token]").get_attribute("value")
    # The browser's own session, with a valid token: the role still refuses it.
    refused = page.request.post(f"{live_server}/console/quarantine/{entry_id}/discard", form={"csrf_token": token})
    assert refused.status == 403 and "Your role does not allow this" in refused.text()
    # Without a token: 400, whoever asks.
    page.context.clear_cookies()
    sign_in(page, live_server, ADMIN)
    forged = page.request.post(f"{live_server}/console/quarantine/{entry_id}/discard", form={"note": "no token"})
    assert forged.status == 400 and "Nothing was changed" in forged.text()
    with runtime.db.reading() as session:
        assert session.get(QuarantinedRequest, entry_id).resolved_at is None


# What the browser shows, the same on either database (the console's own tests run on both): on one of
# them, to keep the suite's time.
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_another_tenants_pages_are_not_found(page, live_server, client, runtime):
    post_standard(client, inbound_body("b-tenant-b"), connection="other", secret=STANDARD_SECRET_B)
    with runtime.db.reading() as session:
        message_id = session.scalars(sa.select(Message.id)).one()
    sign_in(page, live_server, ADMIN_B)
    page.goto(f"{live_server}/console/messages/{message_id}")
    expect(page.locator("h1")).to_have_text("Message received")
    page.context.clear_cookies()
    sign_in(page, live_server, ADMIN_A)
    response = page.goto(f"{live_server}/console/messages/{message_id}")
    assert response is not None and response.status == 404
    expect(page.locator("h1")).to_have_text("Not found")
    page.goto(f"{live_server}/console/messages")
    expect(page.locator("table.list")).not_to_contain_text("b-tenant-b")


PHONE = {"width": 390, "height": 844}


# What the browser shows, the same on either database (the console's own tests run on both): on one of
# them, to keep the suite's time.
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_every_page_fits_a_phone_screen(browser, live_server, client, runtime):
    post_standard(client, inbound_body("b-phone-1", attachments=[{"url": "http://127.0.0.1/x.jpg"}]))
    post_standard(client, inbound_body("b-phone-2"), secret="wrong")
    with runtime.db.reading() as session:
        message_id = session.scalars(sa.select(Message.id)).one()
        entry_id = session.scalars(sa.select(QuarantinedRequest.id)).one()
    context = browser.new_context(viewport=PHONE)
    context.set_default_timeout(BROWSER_TIMEOUT_MS)
    try:
        page = context.new_page()
        sign_in(page, live_server, ADMIN)
        for path in (
            "/console/",
            "/console/requests",
            "/console/quarantine",
            f"/console/quarantine/{entry_id}",
            "/console/messages",
            f"/console/messages/{message_id}",
            "/console/attachments",
            "/console/endpoints",
            "/console/audit",
        ):
            page.goto(f"{live_server}{path}")
            # Nothing wider than the screen, and every cell of a list on it, not scrolled off to the right.
            assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], path
            for cell in page.locator("table.list > tbody > tr > td").all():
                box = cell.bounding_box()
                assert box is None or box["x"] + box["width"] <= PHONE["width"] + 1, (path, cell.inner_text())
        page.goto(f"{live_server}/console/requests")
        expect(page.locator("table.list tbody tr").first.locator(".badge")).to_be_in_viewport()
    finally:
        context.close()


# What the browser shows, the same on either database (the console's own tests run on both): on one of
# them, to keep the suite's time.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_api_docs_render_under_their_content_security_policy(page, live_server):
    refused: list[str] = []
    page.on(
        "console", lambda message: refused.append(message.text) if "Content Security Policy" in message.text else None
    )
    response = page.goto(f"{live_server}/docs")
    assert response is not None and "nonce-" in response.headers["content-security-policy"]
    expect(page.locator(".opblock").first).to_be_visible()  # Swagger UI ran and read the document
    expect(page.get_by_text("/api/v1/media").first).to_be_visible()
    assert refused == []
