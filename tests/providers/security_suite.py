"""The security tests every provider adapter runs (anymail's model: one reusable suite, subclassed per
provider). A subclass says how to build a genuine request and how to sign; the suite attacks it.

Subclass contract:
    provider = "twilio"                 # URL segment
    connection = "main"                 # a connection with secrets in the test settings
    basic_connection = "basic"          # a connection with basic_auth ["hook:old-password", "hook:new-password"]
                                        # and the same secrets
    signature_headers = ("X-Twilio-Signature",)   # removing any of them must give 401

    def genuine(self, *, body=None, secret=None, url_connection=None, timestamp=None) -> Req
        # a correctly signed request (fresh timestamp where the scheme has one) for `self.connection`,
        # or for `url_connection` (schemes that sign the URL need to know which), signed with `secret`
        # instead of the configured one when given, over `body` when given.

Schemes that sign a timestamp also mix in TimestampSecurityTests (and set `tolerance`).
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field, replace

import sqlalchemy as sa

from webhook_service.database.tables import Message, QuarantinedRequest, RawRequest

GARBAGE_SIGNATURES = [
    "",
    "not base64 !!!",
    "A" * 10_000,
    "\u00e9\u00e8\u00ea",
    "v1,",
    "v1,@@@@",
    "t=1,v1=zz",
    base64.b64encode(b"\x00" * 3).decode(),
    base64.b64encode(b"\x00" * 64).decode(),
]


@dataclass
class Req:
    body: bytes
    headers: dict = field(default_factory=dict)
    query: str = ""
    content_type: str = "application/json"
    path_suffix: str = ""  # e.g. "/main"

    def with_header(self, name: str, value: str | None) -> Req:
        headers = {k: v for k, v in self.headers.items() if k.lower() != name.lower()}
        if value is not None:
            headers[name] = value
        return replace(self, headers=headers)


def post(client, provider: str, request: Req, connection: str | None = None):
    path = f"/webhooks/{provider}" + (f"/{connection}" if connection else "")
    if request.query:
        path += "?" + request.query
    return client.post(path, data=request.body, headers=request.headers, content_type=request.content_type)


# Every refusal says the same, whatever the reason (tests/intake/test_refusal_answers.py shows it for each).
REFUSAL_BODY = {"error": {"code": "unauthorized", "message": "The request could not be verified."}}


def assert_quiet_refusal(response) -> None:
    """A 401 with the one JSON error body: it says nothing about why the request was refused."""
    assert response.status_code == 401, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    assert response.get_json() == REFUSAL_BODY, "a 401 must not say why"


def count(runtime, model) -> int:
    with runtime.db.reading() as session:
        return session.scalar(sa.select(sa.func.count()).select_from(model))


class WebhookSecuritySuite:
    provider: str
    connection: str = "main"
    signature_headers: tuple[str, ...] = ()
    basic_connection: str = "basic"

    def send(self, client, request: Req, connection: str | None = None):
        return post(client, self.provider, request, connection or self.connection)

    # The genuine request works -----------------------------------------------------------------
    def test_genuine_request_is_accepted(self, client, runtime):
        response = self.send(client, self.genuine())
        assert response.status_code == 200, response.get_data(as_text=True)
        assert count(runtime, RawRequest) == 1
        assert count(runtime, QuarantinedRequest) == 0

    def test_same_request_twice_is_a_harmless_duplicate(self, client, runtime):
        request = self.genuine()
        assert self.send(client, request).status_code == 200
        with runtime.db.reading() as session:
            before = [(m.id, m.status) for m in session.scalars(sa.select(Message))]
        assert self.send(client, request).status_code == 200
        with runtime.db.reading() as session:
            after = [(m.id, m.status) for m in session.scalars(sa.select(Message))]
        assert after == before
        assert count(runtime, RawRequest) == 1

    # Refusals ---------------------------------------------------------------------------------
    def _refused(self, client, runtime, request: Req, connection: str | None = None) -> None:
        assert_quiet_refusal(self.send(client, request, connection))
        assert count(runtime, Message) == 0
        with runtime.db.reading() as session:
            quarantined = session.scalars(sa.select(QuarantinedRequest)).all()
        assert len(quarantined) == 1
        assert quarantined[0].body == request.body, "the raw request is kept whole"
        assert quarantined[0].http_status == 401
        assert quarantined[0].reason

    def test_missing_signature_headers(self, client, runtime):
        for header in self.signature_headers:
            request = self.genuine().with_header(header, None)
            self._refused(client, runtime, request)
            self._clear_quarantine(runtime)

    def test_wrong_secret(self, client, runtime):
        self._refused(client, runtime, self.genuine(secret="wrong"))

    def test_signature_over_a_different_body(self, client, runtime):
        genuine = self.genuine()
        other = self.genuine(
            body=self.genuine().body.replace(b"}", b', "x": 1}', 1)
            if genuine.body.endswith(b"}")
            else genuine.body + b"&x=1"
        )
        tampered = replace(genuine, headers=other.headers)
        assert tampered.body != other.body
        self._refused(client, runtime, tampered)

    def test_malformed_signatures_are_401_never_500(self, client, runtime):
        for header in self.signature_headers:
            for garbage in GARBAGE_SIGNATURES:
                response = self.send(client, self.genuine().with_header(header, garbage))
                assert response.status_code == 401, (header, garbage, response.status_code)
        assert count(runtime, Message) == 0

    def test_unknown_connection_is_404(self, client):
        assert self.send(client, self.genuine(), connection="no-such-connection").status_code == 404

    # Basic auth on top of the signature ---------------------------------------------------------
    def _basic(self, user: str, password: str) -> str:
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def test_basic_auth_rotation(self, client, runtime):
        for password in ("old-password", "new-password"):
            request = self.genuine(url_connection=self.basic_connection).with_header(
                "Authorization", self._basic("hook", password)
            )
            response = self.send(client, request, self.basic_connection)
            assert response.status_code == 200, (password, response.get_data(as_text=True))

    def test_basic_auth_wrong_or_missing(self, client, runtime):
        for authorization in (
            None,
            self._basic("hook", "wrong"),
            self._basic("other", "old-password"),
            "Basic !!!",
            "Bearer old-password",
        ):
            request = self.genuine(url_connection=self.basic_connection).with_header("Authorization", authorization)
            response = self.send(client, request, self.basic_connection)
            assert_quiet_refusal(response)
            # The challenge that makes Twilio send the credentials of a user:password@ webhook URL.
            assert response.headers["WWW-Authenticate"] == 'Basic realm="webhooks", charset="UTF-8"', authorization
        with runtime.db.reading() as session:
            stored = session.scalars(sa.select(QuarantinedRequest)).all()
        assert stored and all(row.headers for row in stored)
        assert all("old-password" not in str(row.headers) for row in stored), "credentials are redacted"

    @staticmethod
    def _clear_quarantine(runtime) -> None:
        with runtime.db.transaction() as session:
            session.execute(sa.delete(QuarantinedRequest))


class TimestampSecurityTests:
    """For schemes that sign a timestamp: stale, future and replayed-after-the-window requests."""

    tolerance: int = 300

    def test_stale_timestamp(self, client, runtime):
        self._refused(client, runtime, self.genuine(timestamp=int(time.time()) - self.tolerance - 60))

    def test_timestamp_from_the_future(self, client, runtime):
        self._refused(client, runtime, self.genuine(timestamp=int(time.time()) + self.tolerance + 60))

    def test_replay_after_the_window_is_refused(self, client, runtime):
        # A captured request (signed 10 minutes ago, once genuine) sent again now.
        captured = self.genuine(timestamp=int(time.time()) - 2 * self.tolerance)
        self._refused(client, runtime, captured)
