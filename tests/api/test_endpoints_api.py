"""The endpoints API (push delivery's registrations): tenant-scoped like the read API, every bad input a
precise 400 and nothing stored, and endpoint URLs held to the SSRF rules of media downloads."""

from __future__ import annotations

import base64
import logging

import pytest

from tests.fixtures.app import API_KEY_A, USER_A, USER_B
from tests.fixtures.media_server import StaticResolver
from tests.support.refusing import refusing_inserts
from webhook_service.observability.logs import JsonFormatter

A = {"Authorization": "Basic " + base64.b64encode(":".join(USER_A).encode()).decode()}
B = {"Authorization": "Basic " + base64.b64encode(":".join(USER_B).encode()).decode()}
KEY_A = {"Authorization": f"Bearer {API_KEY_A}"}
GOOD_URL = "https://hooks.example.com/webhooks?token=abc"


@pytest.fixture
def resolver():
    return StaticResolver(
        {
            "hooks.example.com": ["93.184.216.34"],
            "intranet.example.com": ["10.1.2.3"],
            "mixed.example.com": ["93.184.216.34", "192.168.0.9"],
            "metadata.example.com": ["169.254.169.254"],
            "localhost": ["127.0.0.1"],
        }
    )


def create(client, headers=A, **body):
    return client.post("/api/v1/endpoints", json={"url": GOOD_URL, **body}, headers=headers)


def error(response, status: int, code: str) -> str:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()["error"]
    assert body["code"] == code
    return body["message"]


def count(client, headers=A) -> int:
    return len(client.get("/api/v1/endpoints", headers=headers).get_json()["endpoints"])


class TestLifecycle:
    def test_create_get_list_update_delete(self, client):
        response = create(client, eventTypes=["message.received"], description="CRM", rateLimitPerSecond=5)
        assert response.status_code == 201
        created = response.get_json()
        assert response.headers["Location"] == f"/api/v1/endpoints/{created['id']}"
        assert {k: created[k] for k in ("url", "eventTypes", "description", "enabled", "rateLimitPerSecond")} == {
            "url": GOOD_URL,
            "eventTypes": ["message.received"],
            "description": "CRM",
            "enabled": True,
            "rateLimitPerSecond": 5,
        }
        assert created["secret"].startswith("whsec_") and created["createdAt"].endswith("Z")
        assert base64.b64decode(created["secret"].removeprefix("whsec_"))  # the spec's shape: base64 bytes
        shown = client.get(f"/api/v1/endpoints/{created['id']}", headers=KEY_A).get_json()
        assert "secret" not in shown and shown["managedBy"] == "api"
        assert [e["id"] for e in client.get("/api/v1/endpoints", headers=A).get_json()["endpoints"]] == [created["id"]]

        patched = client.patch(
            f"/api/v1/endpoints/{created['id']}", json={"description": None, "eventTypes": []}, headers=A
        ).get_json()
        assert patched["description"] is None and patched["eventTypes"] == [] and patched["rateLimitPerSecond"] == 5
        assert client.delete(f"/api/v1/endpoints/{created['id']}", headers=A).status_code == 204
        assert count(client) == 0

    def test_another_tenants_endpoint_is_not_found(self, client):
        created = create(client).get_json()
        path = f"/api/v1/endpoints/{created['id']}"
        for method, suffix in (
            ("get", ""),
            ("patch", ""),
            ("delete", ""),
            ("post", "/rotate-secret"),
            ("get", "/attempts"),
            ("post", "/replay"),
        ):
            kwargs = {"json": {"eventIds": ["1"]}} if suffix == "/replay" else {}
            if method == "patch":
                kwargs = {"json": {"enabled": False}}
            response = getattr(client, method)(path + suffix, headers=B, **kwargs)
            error(response, 404, "not_found")
        assert count(client, B) == 0 and count(client) == 1
        assert client.get(path, headers=A).get_json()["enabled"] is True

    def test_credentials_are_required(self, client):
        error(client.get("/api/v1/endpoints"), 401, "unauthorized")
        error(client.post("/api/v1/endpoints", json={"url": GOOD_URL}), 401, "unauthorized")


class TestRefusedUrls:
    @pytest.mark.parametrize(
        "url",
        [
            "https://127.0.0.1/hook",
            "https://localhost/hook",
            "https://[::1]/hook",
            "https://10.0.0.5/hook",
            "https://192.168.1.1/hook",
            "https://169.254.10.10/hook",  # link-local
            "https://169.254.169.254/latest/meta-data/",
            "https://intranet.example.com/hook",
            "https://mixed.example.com/hook",
            "https://metadata.example.com/hook",
            "https://[::ffff:10.0.0.1]/hook",
            "https://2130706433/hook",
        ],
    )
    def test_private_loopback_link_local_and_metadata_addresses(self, client, url):
        message = error(create(client, url=url), 400, "endpoint_url_refused")
        assert "?" not in message
        assert count(client) == 0

    @pytest.mark.parametrize(
        "url",
        [
            "file:///etc/passwd",
            "ftp://hooks.example.com/x",
            "gopher://hooks.example.com/",
            "http://hooks.example.com/hook",  # plain http, not allowed by default
            "https://user:hunter2@hooks.example.com/hook",
            "https://user@hooks.example.com/hook",
            "hooks.example.com/hook",
            "https://",
            "https://hooks example.com/",
            "https://hooks.example.com:0/",
            "https://" + "a" * 2100 + ".example.com/",
        ],
    )
    def test_other_schemes_credentials_and_malformed_urls(self, client, url):
        message = error(create(client, url=url), 400, "endpoint_url_refused" if len(url) < 2048 else "invalid_field")
        assert "hunter2" not in message
        assert count(client) == 0

    def test_a_name_that_does_not_resolve_yet_is_accepted_and_checked_at_delivery(self, client):
        assert create(client, url="https://not-yet.example.com/hook").status_code == 201

    def test_a_changed_url_is_checked_as_at_registration(self, client):
        created = create(client).get_json()
        response = client.patch(f"/api/v1/endpoints/{created['id']}", json={"url": "https://10.0.0.1/"}, headers=A)
        error(response, 400, "endpoint_url_refused")
        assert client.get(f"/api/v1/endpoints/{created['id']}", headers=A).get_json()["url"] == GOOD_URL


class TestBadBodies:
    @pytest.mark.parametrize(
        "body, message",
        [
            ({"url": GOOD_URL, "eventTypes": ["message.sent"]}, "eventTypes: unknown event type 'message.sent'"),
            ({"url": GOOD_URL, "eventTypes": "message.received"}, "eventTypes: expected a list"),
            ({"url": GOOD_URL, "eventTypes": [1]}, "eventTypes: unknown event type '1'"),
            ({"url": GOOD_URL, "rateLimitPerSecond": 0}, "rateLimitPerSecond: expected an integer from 1"),
            ({"url": GOOD_URL, "rateLimitPerSecond": "5"}, "rateLimitPerSecond: expected an integer"),
            ({"url": GOOD_URL, "rateLimitPerSecond": 2.5}, "rateLimitPerSecond: expected an integer"),
            ({"url": GOOD_URL, "rateLimitPerSecond": True}, "rateLimitPerSecond: expected an integer"),
            ({"url": GOOD_URL, "description": "x" * 1025}, "description: expected text of at most 1024"),
            ({"url": GOOD_URL, "secret": "whsec_mine"}, "secret: not a field of this request"),
            ({"url": 5}, "url: expected an absolute http(s) URL"),
            ({"url": ""}, "url: expected an absolute http(s) URL"),
            ({}, "url: required"),
        ],
    )
    def test_refused_fields(self, client, body, message):
        response = client.post("/api/v1/endpoints", json=body, headers=A)
        assert message in error(response, 400, "invalid_field")
        assert count(client) == 0

    # PostgreSQL's text cannot hold a NUL: the insert or update failed with a 500. Sent as JSON escapes
    # (a lone surrogate cannot be encoded as UTF-8 at all).
    @pytest.mark.parametrize(
        "field, text",
        [
            ("description", "a\\u0000b"),
            ("description", "a\\ud800b"),
            ("url", "https://hooks.example.com/a\\u0000?token=abc"),
            ("url", "https://hooks.example.com/a?x=\\udfff"),
        ],
    )
    def test_text_the_database_cannot_hold_is_refused(self, client, field, text):
        expected = f"{field}: must not contain NUL characters (\\u0000) or lone surrogates (\\ud800-\\udfff)"
        other = f'"url": "{GOOD_URL}", ' if field != "url" else ""
        raw = "{" + other + f'"{field}": "{text}"' + "}"
        response = client.post("/api/v1/endpoints", data=raw, content_type="application/json", headers=A)
        assert error(response, 400, "invalid_field") == expected
        assert count(client) == 0
        created = create(client, description="kept").get_json()
        path = f"/api/v1/endpoints/{created['id']}"
        response = client.patch(
            path, data="{" + f'"{field}": "{text}"' + "}", content_type="application/json", headers=A
        )
        assert error(response, 400, "invalid_field") == expected
        shown = client.get(path, headers=A).get_json()
        assert (shown["url"], shown["description"]) == (GOOD_URL, "kept")

    @pytest.mark.parametrize("endpoint_id", ["%00", "x%00y", "%ED%A0%80"])
    def test_an_id_the_database_cannot_hold_is_not_found(self, client, endpoint_id):
        create(client)
        path = f"/api/v1/endpoints/{endpoint_id}"
        answers = [
            client.get(path, headers=A),
            client.patch(path, json={"description": "x"}, headers=A),
            client.post(f"{path}/rotate-secret", headers=A),
            client.get(f"{path}/attempts", headers=A),
            client.post(f"{path}/replay", json={"eventIds": ["1"]}, headers=A),
            client.delete(path, headers=A),
        ]
        assert [answer.status_code for answer in answers] == [404] * 6
        assert count(client) == 1

    @pytest.mark.parametrize("field", ["url", "eventTypes", "enabled"])
    def test_an_update_to_null_of_a_field_that_cannot_be_cleared(self, client, field):
        # The document gives these no null: a null is refused, not read as "unchanged".
        created = create(client, eventTypes=["message.received"]).get_json()
        path = f"/api/v1/endpoints/{created['id']}"
        response = client.patch(path, json={field: None, "description": "changed"}, headers=A)
        assert f"{field}: null is not a value of this field" in error(response, 400, "invalid_field")
        shown = client.get(path, headers=A).get_json()
        assert (shown["url"], shown["eventTypes"], shown["enabled"], shown["description"]) == (
            GOOD_URL,
            ["message.received"],
            True,
            None,
        )

    @pytest.mark.parametrize(
        "data, content_type",
        [(b"[]", "application/json"), (b"{", "application/json"), (b"url=x", "application/x-www-form-urlencoded")],
    )
    def test_not_a_json_object(self, client, data, content_type):
        response = client.post("/api/v1/endpoints", data=data, content_type=content_type, headers=A)
        error(response, 400, "invalid_json")

    def test_a_body_over_64_kib(self, client):
        response = client.post(
            "/api/v1/endpoints", data=b'{"url": "' + b"x" * 70_000 + b'"}', content_type="application/json", headers=A
        )
        assert response.status_code == 413

    @pytest.mark.parametrize(
        "body, message",
        [
            ({}, "exactly one of since and eventIds"),
            ({"since": "2026-01-01T00:00:00Z", "eventIds": ["1"]}, "exactly one of since and eventIds"),
            ({"since": "yesterday"}, "since: expected an RFC 3339 time"),
            ({"since": "2026-01-01T00:00:00"}, "since: expected an RFC 3339 time"),  # no offset: which zone?
            ({"since": None}, "since: expected an RFC 3339 time"),
            ({"eventIds": []}, "eventIds: expected a list of 1 to 1000"),
            ({"eventIds": ["abc"]}, "eventIds: expected a list of 1 to 1000"),
            ({"eventIds": [5]}, "eventIds: expected a list of 1 to 1000"),
            ({"eventIds": ["1"] * 1001}, "eventIds: expected a list of 1 to 1000"),
        ],
    )
    def test_refused_replays(self, client, body, message):
        created = create(client).get_json()
        response = client.post(f"/api/v1/endpoints/{created['id']}/replay", json=body, headers=A)
        assert message in error(response, 400, "invalid_field")

    @pytest.mark.parametrize(
        "query, message",
        [("limit=0", "limit: expected an integer from 1 to 200"), ("cursor=x", "cursor:"), ("eventId=-1", "eventId:")],
    )
    def test_refused_attempt_queries(self, client, query, message):
        created = create(client).get_json()
        response = client.get(f"/api/v1/endpoints/{created['id']}/attempts?{query}", headers=A)
        assert message in error(response, 400, "invalid_parameter")

    @pytest.mark.parametrize("since", ["2026-01-01T00:00:00Z", "2026-01-01T01:00:00+01:00", "1767225600"])
    def test_replay_times_are_rfc_3339_or_unix_seconds(self, client, since):
        created = create(client).get_json()
        response = client.post(f"/api/v1/endpoints/{created['id']}/replay", json={"since": since}, headers=A)
        assert response.status_code == 202 and response.get_json() == {"replayed": 0}

    def test_a_rate_limit_written_as_a_whole_float_is_an_integer(self, client):
        assert create(client, rateLimitPerSecond=5.0).get_json()["rateLimitPerSecond"] == 5
        for refused in (5.5, True, "5"):
            error(create(client, rateLimitPerSecond=refused), 400, "invalid_field")


@pytest.fixture
def settings_overrides():
    # One endpoint declared in the configuration, for tenant A.
    return {
        "delivery": {
            "endpoints": [
                {
                    "tenant": "00000000-0000-0000-0000-000000000000",
                    "name": "crm",
                    "url": "https://hooks.example.com/crm",
                    "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                    "event_types": ["message.received"],
                }
            ]
        }
    }


class TestServerErrors:
    def test_a_database_errors_log_line_holds_no_parameter_value(self, client, runtime, caplog):
        # The statement's parameters are the endpoint's URL with its credential and its sealed secret.
        caplog.set_level(logging.ERROR, logger="webhook_service.app")
        with refusing_inserts(runtime.db, "endpoints"):
            response = create(client, url="https://hooks.example.com/in?token=CREDENTIAL-123", description="DESC-456")
        assert error(response, 500, "internal_error") == "An unexpected error occurred."
        [record] = [r for r in caplog.records if r.getMessage() == "unhandled_exception"]
        line = JsonFormatter().format(record)
        assert "INSERT INTO endpoints" in line and "parameters hidden" in line
        assert "CREDENTIAL-123" not in line and "DESC-456" not in line and "whsec_" not in line


class TestDeclaredEndpoints:
    def test_declared_endpoints_are_shown_and_cannot_be_changed_through_the_api(self, client, runtime):
        runtime.sweep_deliveries()  # the worker makes the declared endpoints match the configuration
        [declared] = client.get("/api/v1/endpoints", headers=A).get_json()["endpoints"]
        assert (declared["managedBy"], declared["name"], declared["eventTypes"]) == (
            "configuration",
            "crm",
            ["message.received"],
        )
        path = f"/api/v1/endpoints/{declared['id']}"
        error(client.patch(path, json={"enabled": False}, headers=A), 409, "managed_by_configuration")
        error(client.delete(path, headers=A), 409, "managed_by_configuration")
        error(client.post(f"{path}/rotate-secret", headers=A), 409, "managed_by_configuration")
        assert client.get(f"{path}/attempts", headers=A).status_code == 200
        assert client.post(f"{path}/replay", json={"eventIds": ["1"]}, headers=A).status_code == 202

    def test_a_configuration_change_updates_and_removes_declared_endpoints(self, client, runtime, settings):
        runtime.endpoints.sync_declared(settings.delivery.endpoints)
        [before] = client.get("/api/v1/endpoints", headers=A).get_json()["endpoints"]
        changed = settings.delivery.endpoints[0].model_copy(update={"url": "https://hooks.example.com/v2"})
        runtime.endpoints.sync_declared([changed])
        [after] = client.get("/api/v1/endpoints", headers=A).get_json()["endpoints"]
        assert after["id"] == before["id"] and after["url"] == "https://hooks.example.com/v2"
        runtime.endpoints.sync_declared([])
        assert count(client) == 0
