"""Who gets into the console and what they may do: sign-in without user enumeration, rate limits per
address and per username, the session cookie's attributes, expired and tampered cookies, CSRF on every
POST, roles, tenant scoping, and the security headers of every page."""

from __future__ import annotations

import re
import time

import pytest
import sqlalchemy as sa
from itsdangerous import URLSafeTimedSerializer

from tests.console.conftest import ADMIN, ADMIN_A, ADMIN_B, OPERATORS, VIEWER, csrf_token, post_form, sign_in
from tests.fixtures.app import TENANT_B
from tests.support.standard import inbound_body, post_standard
from webhook_service.app import create_app
from webhook_service.config.model import Operator
from webhook_service.database.tables import Attachment, AuditEntry, QuarantinedRequest
from webhook_service.runtime import Runtime

PAGES = [
    "/console/",
    "/console/requests",
    "/console/quarantine",
    "/console/messages",
    "/console/attachments",
    "/console/audit",
]


def _audit(runtime) -> list[AuditEntry]:
    with runtime.db.reading() as session:
        return list(session.scalars(sa.select(AuditEntry).order_by(AuditEntry.id)))


def _refused_entry(client, runtime, *, connection: str = "main") -> int:
    post_standard(client, inbound_body(f"q-{connection}-{time.time_ns()}"), connection=connection, secret="wrong")
    with runtime.db.reading() as session:
        return session.scalars(sa.select(QuarantinedRequest.id).order_by(QuarantinedRequest.id.desc())).first()


class TestSignIn:
    def test_every_page_sends_a_stranger_to_the_sign_in_form(self, client):
        for url in PAGES:
            response = client.get(url)
            assert response.status_code == 303 and "/console/login" in response.headers["Location"], url
        form = client.get("/console/login").get_data(as_text=True)
        assert 'name="username"' in form and 'name="password"' in form and 'type="password"' in form

    def test_signing_in_opens_the_page_asked_for_and_is_audited(self, client, runtime):
        asked = client.get("/console/quarantine?provider=standard")
        token = csrf_token(client.get(asked.headers["Location"]).get_data(as_text=True))
        response = client.post(
            "/console/login",
            data={
                "username": ADMIN[0],
                "password": ADMIN[1],
                "csrf_token": token,
                "next": "/console/quarantine?provider=standard",
            },
        )
        assert response.status_code == 303 and response.headers["Location"] == "/console/quarantine?provider=standard"
        assert client.get("/console/quarantine").status_code == 200
        [entry] = _audit(runtime)
        assert (entry.actor, entry.action, entry.result) == (ADMIN[0], "sign_in", "ok")

    @pytest.mark.parametrize(
        "target",
        [
            "https://evil.example/",
            "//evil.example/console",
            "/api/v1/messages",
            "/console\\@evil",
            # Dot segments, which browsers resolve (encoded too), out of the console.
            "/console/../api/v1/messages",
            "/console/%2e%2E/api/v1/messages",
            # No header carries a line break: these were 500s.
            "/console/\r\nX-Injected: yes",
            "/console/\u2028",
        ],
    )
    def test_after_signing_in_it_never_goes_to_another_site(self, client, target):
        token = csrf_token(client.get("/console/login").get_data(as_text=True))
        response = client.post(
            "/console/login", data={"username": ADMIN[0], "password": ADMIN[1], "csrf_token": token, "next": target}
        )
        assert response.status_code == 303 and response.headers["Location"] == "/console/"
        # Signed in already, the sign-in page sends them on the same way.
        response = client.get("/console/login", query_string={"next": target})
        assert response.status_code == 303 and response.headers["Location"] == "/console/"

    def test_a_wrong_password_and_an_unknown_user_get_the_same_answer(self, client):
        answers = []
        for username, password in ((ADMIN[0], "wrong"), ("nobody", "wrong"), (ADMIN[0], "")):
            token = csrf_token(client.get("/console/login").get_data(as_text=True))
            response = client.post(
                "/console/login", data={"username": username, "password": password, "csrf_token": token}
            )
            body = response.get_data(as_text=True)
            # The form's new CSRF token carries the second it was signed in: two answers a second apart
            # differ there, and only there.
            answers.append((response.status_code, body.replace(csrf_token(body), "<csrf token>").replace(username, "")))
        assert answers[0] == answers[1] == answers[2]
        assert answers[0][0] == 401 and "Wrong username or password." in answers[0][1]
        assert client.get("/console/").status_code == 303

    def test_wrong_passwords_are_limited_per_username_with_no_enumeration(self, client):
        statuses = {}
        for username in (ADMIN[0], "nobody-at-all"):
            statuses[username] = []
            for _ in range(7):
                token = csrf_token(client.get("/console/login").get_data(as_text=True))
                response = client.post(
                    "/console/login", data={"username": username, "password": "guess", "csrf_token": token}
                )
                statuses[username].append(response.status_code)
        # 5 a minute per username, existing or not: the same sequence for both.
        assert statuses[ADMIN[0]] == statuses["nobody-at-all"] == [401] * 5 + [429] * 2
        # The right password is refused too while the limit holds: guessing cannot go on.
        assert sign_in(client, ADMIN).status_code == 429
        # Another operator is not locked out by it.
        assert sign_in(client, VIEWER).status_code == 303


class TestAddressLimit:
    @pytest.fixture
    def settings_overrides(self):
        return {"operators": OPERATORS, "console": {"login_limit_per_address": "3/minute"}}

    def test_attempts_are_limited_per_address(self, client):
        for number in range(3):
            assert sign_in(client, (f"user-{number}", "guess")).status_code == 401
        assert sign_in(client, ADMIN).status_code == 429
        # Another address still gets in.
        other = client.application.test_client()
        token = csrf_token(other.get("/console/login", environ_base={"REMOTE_ADDR": "10.9.8.7"}).get_data(as_text=True))
        response = other.post(
            "/console/login",
            data={"username": ADMIN[0], "password": ADMIN[1], "csrf_token": token},
            environ_base={"REMOTE_ADDR": "10.9.8.7"},
        )
        assert response.status_code == 303


class TestSessionCookie:
    def test_signed_http_only_same_site_lax_and_only_for_the_console(self, client):
        response = sign_in(client, ADMIN)
        cookie = response.headers["Set-Cookie"]
        assert cookie.startswith("console_session=")
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/console" in cookie
        assert "Secure" not in cookie  # public_base_url is not https in these tests

    def test_webhooks_and_apis_neither_read_nor_set_it(self, client):
        sign_in(client, ADMIN)
        response = post_standard(client, inbound_body("no-cookie"))
        assert response.status_code == 200 and "Set-Cookie" not in response.headers
        assert "Set-Cookie" not in client.get("/healthz").headers

    def test_a_tampered_cookie_is_no_session(self, client):
        sign_in(client, ADMIN)
        value = client.get_cookie("console_session", path="/console").value
        client.set_cookie("console_session", value[:-2] + ("AA" if not value.endswith("AA") else "BB"), path="/console")
        response = client.get("/console/")
        assert response.status_code == 303 and "/console/login" in response.headers["Location"]

    def test_a_sign_in_ends_after_its_lifetime_however_busy(self, app, client):
        """Each answer signs the cookie anew (its timestamp only says when it was last used): a session
        used every few minutes, by its operator or by whoever copied its cookie, lasted for ever."""
        sign_in(client, ADMIN)
        serializer = app.session_interface.get_signing_serializer(app)
        data = serializer.loads(client.get_cookie("console_session", path="/console").value)
        # The cookie as a browser holds it after a request a moment ago, of a sign-in 12 hours old (the default).
        data["signed_in_at"] = int(time.time()) - 12 * 3600 + 60
        client.set_cookie("console_session", serializer.dumps(data), path="/console")
        assert client.get("/console/").status_code == 200
        data["signed_in_at"] = int(time.time()) - 12 * 3600 - 1
        client.set_cookie("console_session", serializer.dumps(data), path="/console")
        response = client.get("/console/")
        assert response.status_code == 303 and "/console/login" in response.headers["Location"]

    def test_a_cookie_signed_with_another_key_is_no_session(self, client):
        forged = URLSafeTimedSerializer(b"not the key", salt="cookie-session").dumps({"operator": ADMIN[0]})
        client.set_cookie("console_session", forged, path="/console")
        assert client.get("/console/").status_code == 303


class TestSecureCookie:
    @pytest.fixture
    def settings_overrides(self):
        return {"operators": OPERATORS, "public_base_url": "https://hooks.example.com"}

    def test_the_cookie_is_secure_when_the_public_url_is_https(self, app):
        client = app.test_client()
        token = csrf_token(client.get("/console/login", base_url="https://hooks.example.com").get_data(as_text=True))
        response = client.post(
            "/console/login",
            data={"username": ADMIN[0], "password": ADMIN[1], "csrf_token": token},
            base_url="https://hooks.example.com",
        )
        assert response.status_code == 303
        cookie = response.headers["Set-Cookie"]
        assert "; Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


class TestExpiry:
    @pytest.fixture
    def settings_overrides(self):
        return {"operators": OPERATORS, "console": {"session_hours": 1 / 3600}}  # one second

    def test_an_expired_session_goes_back_to_the_sign_in(self, client):
        sign_in(client, ADMIN)
        assert client.get("/console/").status_code == 200
        time.sleep(2.1)
        response = client.get("/console/")
        assert response.status_code == 303 and "/console/login" in response.headers["Location"]


class TestCsrf:
    def test_a_post_without_the_token_is_400_and_changes_nothing(self, client, runtime):
        entry_id = _refused_entry(client, runtime)
        sign_in(client, ADMIN)
        for data in ({}, {"csrf_token": "forged"}):
            response = client.post(f"/console/quarantine/{entry_id}/discard", data=data)
            assert response.status_code == 400 and "Nothing was changed" in response.get_data(as_text=True)
        with runtime.db.reading() as session:
            assert session.get(QuarantinedRequest, entry_id).resolved_at is None
        assert post_form(client, f"/console/quarantine/{entry_id}/discard").status_code == 303
        with runtime.db.reading() as session:
            assert session.get(QuarantinedRequest, entry_id).resolution == "discarded"

    def test_a_form_larger_than_any_console_form_is_refused_unread(self, client):
        """werkzeug reads a url-encoded form whole: 2 MiB (or 2 GiB) at the sign-in page were read and
        parsed, for anyone."""
        token = csrf_token(client.get("/console/login").get_data(as_text=True))
        for url in ("/console/login", "/console/quarantine/bulk"):
            body = f"csrf_token={token}&username=".encode() + b"a" * (2 * 1024 * 1024)
            response = client.post(url, data=body, content_type="application/x-www-form-urlencoded")
            assert response.status_code == 413 and "text/html" in response.headers["Content-Type"], url
        # A full bulk form (200 ids and every filter) is far below the limit.
        sign_in(client, ADMIN)
        ids = [str(10**17 + number) for number in range(200)]
        filters = dict.fromkeys(("provider", "connection", "reason", "request_id"), "%" * 255)
        response = post_form(client, "/console/quarantine/bulk", {"action": "discard", "ids": ids, **filters})
        assert response.status_code == 303

    def test_signing_in_needs_the_token_too(self, client):
        response = client.post("/console/login", data={"username": ADMIN[0], "password": ADMIN[1]})
        assert response.status_code == 400 and client.get("/console/").status_code == 303

    def test_another_sessions_token_does_not_pass(self, client, app, runtime):
        entry_id = _refused_entry(client, runtime)
        other = app.test_client()
        sign_in(other, ADMIN)
        stolen = csrf_token(other.get("/console/").get_data(as_text=True))
        sign_in(client, ADMIN)
        response = client.post(f"/console/quarantine/{entry_id}/discard", data={"csrf_token": stolen})
        assert response.status_code == 400


class TestRoles:
    def test_a_viewer_sees_but_cannot_act_and_the_refusal_is_audited(self, client, runtime):
        entry_id = _refused_entry(client, runtime)
        sign_in(client, VIEWER)
        page = client.get(f"/console/quarantine/{entry_id}").get_data(as_text=True)
        assert "Viewers cannot replay or discard" in page and "/replay" not in page
        for action in ("replay", "replay_trusted", "discard"):
            response = post_form(client, f"/console/quarantine/{entry_id}/{action}")
            assert response.status_code == 403
        response = post_form(client, "/console/quarantine/bulk", {"action": "discard", "ids": [str(entry_id)]})
        assert response.status_code == 403
        with runtime.db.reading() as session:
            assert session.get(QuarantinedRequest, entry_id).resolved_at is None
        refused = [(e.actor, e.action, e.result) for e in _audit(runtime) if e.action != "sign_in"]
        assert refused[:3] == [(VIEWER[0], a, "refused") for a in ("replay", "replay_trusted", "discard")]


class TestTenants:
    def test_another_tenants_request_message_attachment_and_entry_are_404(self, client, runtime):
        post_standard(
            client,
            inbound_body("b-message", attachments=[{"url": "http://127.0.0.1/b.jpg"}]),
            connection="other",
            secret="whsec_" + "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI=",
        )
        b_entry = _refused_entry(client, runtime, connection="other")
        with runtime.db.transaction() as session:
            b_attachment = session.scalars(sa.select(Attachment.id)).one()
            session.execute(sa.update(Attachment).values(status="failed", reason_code="timeout", reason="for tests"))
        sign_in(client, ADMIN_B)
        requests_page = client.get("/console/requests").get_data(as_text=True)
        assert b_attachment in client.get("/console/attachments").get_data(as_text=True)
        log_ids = sorted({int(i) for i in re.findall(r"/console/requests/(\d+)", requests_page)})
        message_id = re.search(
            r"/console/messages/([0-9a-f-]{36})", client.get("/console/messages").get_data(as_text=True)
        ).group(1)
        client.post("/console/logout", data={"csrf_token": csrf_token(client.get("/console/").get_data(as_text=True))})

        sign_in(client, ADMIN_A)
        for url in [f"/console/requests/{i}" for i in log_ids] + [
            f"/console/messages/{message_id}",
            f"/console/quarantine/{b_entry}",
            f"/console/quarantine/{b_entry}/body",
        ]:
            assert client.get(url).status_code == 404, url
        assert post_form(client, f"/console/quarantine/{b_entry}/discard").status_code == 404
        assert post_form(client, f"/console/attachments/{b_attachment}/retry").status_code == 404
        assert b_attachment not in client.get("/console/attachments").get_data(as_text=True)
        assert "b-message" not in client.get("/console/messages").get_data(as_text=True)
        assert TENANT_B not in client.get("/console/requests").get_data(as_text=True)
        assert "/console/requests/" not in client.get("/console/requests").get_data(as_text=True)

    def test_requests_to_unknown_urls_are_seen_only_by_operators_of_every_tenant(self, client):
        client.post("/webhooks/nosuch", data=b"{}")
        sign_in(client, ADMIN_A)
        assert "nosuch" not in client.get("/console/requests").get_data(as_text=True)
        client.post("/console/logout", data={"csrf_token": csrf_token(client.get("/console/").get_data(as_text=True))})
        sign_in(client, ADMIN)
        assert "nosuch" in client.get("/console/requests").get_data(as_text=True)


class TestHeaders:
    def test_every_page_has_a_strict_policy_and_cannot_be_framed(self, admin):
        answers = [admin.get(url) for url in [*PAGES, "/console/login", "/console/nowhere"]]
        # Methods no console route takes are answered outside the console's blueprint (405): these lacked them.
        answers += [
            admin.put("/console/quarantine/1/discard"),
            admin.delete("/console/"),
            admin.patch("/console/requests"),
        ]
        assert [response.status_code for response in answers[-3:]] == [405] * 3
        assert "Content-Security-Policy" not in admin.get("/healthz").headers  # the console's own rules
        for response in answers:
            url = response.request.path
            policy = response.headers["Content-Security-Policy"]
            assert "default-src 'none'" in policy and "script-src 'none'" in policy, url
            assert "frame-ancestors 'none'" in policy and "form-action 'self'" in policy, url
            assert response.headers["X-Frame-Options"] == "DENY" and response.headers["Cache-Control"] == "no-store"
            assert "<script" not in response.get_data(as_text=True), url


def _app_with(settings, **changes):
    """Another process of the same deployment (same secret key), its configuration changed."""
    return Runtime(settings.model_copy(update=changes))


class TestOperatorChanges:
    def test_a_changed_password_or_a_removed_operator_ends_their_sessions(self, client, settings):
        sign_in(client, ADMIN)
        cookie = client.get_cookie("console_session", path="/console").value
        changed = [
            Operator.model_validate(
                dict(o, password_hash=OPERATORS[1]["password_hash"]) if o["username"] == ADMIN[0] else o
            )
            for o in OPERATORS
        ]
        unchanged = [Operator.model_validate(o) for o in OPERATORS]
        for operators, status in ((changed, 303), (unchanged[1:], 303), (unchanged, 200)):
            runtime = _app_with(settings, operators=operators)
            try:
                other = create_app(runtime=runtime).test_client()
                other.set_cookie("console_session", cookie, path="/console")
                assert other.get("/console/").status_code == status
            finally:
                runtime.close()


class TestOutage:
    def test_an_unreachable_database_is_a_503_page(self, client, settings):
        sign_in(client, ADMIN)
        cookie = client.get_cookie("console_session", path="/console").value
        token = csrf_token(client.get("/console/audit").get_data(as_text=True))
        signed_in = client.get_cookie("console_session", path="/console").value  # holding that token
        runtime = _app_with(settings, database_url="postgresql+psycopg://postgres@127.0.0.1:9/nothing")
        try:
            down = create_app(runtime=runtime).test_client()
            down.set_cookie("console_session", cookie, path="/console")
            for url in ("/console/", "/console/requests", "/console/messages/x", "/console/quarantine/1"):
                response = down.get(url)
                assert response.status_code == 503 and response.headers["Retry-After"] == "5", url
                assert "text/html" in response.headers["Content-Type"]
            # Signing out ends the session all the same (it was a 503 that left the operator signed in).
            down.set_cookie("console_session", signed_in, path="/console")
            response = down.post("/console/logout", data={"csrf_token": token})
            assert response.status_code == 303 and response.headers["Location"] == "/console/login"
            response = down.get("/console/")
            assert response.status_code == 303 and "/console/login" in response.headers["Location"]
            # Signing in is recorded in the audit log first: no session without it.
            response = sign_in(create_app(runtime=runtime).test_client(), ADMIN)
            assert response.status_code == 503 and "console_session=" not in response.headers.get("Set-Cookie", "")
        finally:
            runtime.close()
