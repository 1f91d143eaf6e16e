"""Every 401 the service gives carries a body that says what it is: the webhooks' short JSON error (the
same whatever the reason, with the request id, and a Basic challenge where the connection takes Basic
credentials), and the APIs' error shape with their challenge. None is an empty text/html page."""

from __future__ import annotations

import base64

import pytest

from tests.providers.security_suite import REFUSAL_BODY, assert_quiet_refusal
from tests.support.standard import inbound_body, post_standard, standard_headers

CHALLENGE = 'Basic realm="webhooks", charset="UTF-8"'


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


class TestWebhooks:
    def test_a_bad_signature_is_the_json_error_without_a_challenge(self, client):
        body = inbound_body("m-1")
        headers = {**standard_headers(body), "webhook-signature": "v1,AAAA"}
        response = client.post("/webhooks/standard/main", data=body, headers=headers, content_type="application/json")
        assert_quiet_refusal(response)
        assert response.headers["X-Request-Id"]
        assert "WWW-Authenticate" not in response.headers, "a signature cannot be asked for"

    @pytest.mark.parametrize("credentials", [None, ("hook", "wrong")], ids=["none", "wrong"])
    def test_a_basic_auth_connection_challenges(self, client, credentials):
        """Twilio sends a user:password@ URL's credentials only after a 401 with WWW-Authenticate."""
        body = inbound_body("m-1")
        headers = dict(standard_headers(body))
        if credentials:
            headers.update(_basic(*credentials))
        response = client.post(
            "/webhooks/standard/basic-only", data=body, headers=headers, content_type="application/json"
        )
        assert_quiet_refusal(response)
        assert response.headers["WWW-Authenticate"] == CHALLENGE
        retried = client.post(
            "/webhooks/standard/basic-only",
            data=body,
            headers={**headers, **_basic("hook", "old-password")},
            content_type="application/json",
        )
        assert retried.status_code == 200

    def test_the_same_answer_whatever_the_reason(self, client):
        body = inbound_body("m-1")
        unsigned = client.post("/webhooks/standard/main", data=body, content_type="application/json")
        wrong_secret = client.post(
            "/webhooks/standard/main",
            data=body,
            headers=standard_headers(body, secret="wrong"),
            content_type="application/json",
        )
        assert unsigned.get_json() == wrong_secret.get_json() == REFUSAL_BODY
        assert post_standard(client, body).status_code == 200


class TestApis:
    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("GET", "/api/v1/messages"),
            ("GET", "/api/v1/events"),
            ("GET", "/api/v1/messages/x"),
            ("POST", "/api/v1/media"),
            ("GET", "/api/v1/media/x"),
            ("DELETE", "/api/v1/media/x"),
        ],
    )
    def test_the_api_error_shape_and_a_challenge(self, client, method, path):
        response = client.open(path, method=method, headers=_basic("nobody", "nothing"))
        assert response.status_code == 401
        assert response.mimetype == "application/json"
        assert response.get_json() == {
            "error": {"code": "unauthorized", "message": "Valid Basic credentials or a bearer API key are required."}
        }
        assert response.headers["WWW-Authenticate"].startswith("Basic realm=")
