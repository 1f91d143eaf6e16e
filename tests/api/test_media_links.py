"""An upload's links on the local blob store: the signed URL (HMAC over path and expiry, served with HEAD
and Range), the stable URL that redirects to a fresh one, GET /api/v1/media/<id>, and revocation."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

import storage.local
from tests.fixtures.app import API_KEY_B, TENANT_A, TENANT_B
from tests.media import samples
from tests.support.media_uploads import UPLOADS, A, B, error_of, local, seed_000_body, upload
from webhook_service.app import create_app
from webhook_service.media import links as media_links
from webhook_service.runtime import Runtime

DOCUMENT = samples.pdf(4096)


@pytest.fixture
def uploaded(client) -> dict:
    response = upload(client, seed_000_body(DOCUMENT, fileName="terms.pdf", mimeType="application/pdf"))
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {name: values[0] for name, values in parse_qs(parts.query).items()}
    return f"{parts.path}?{urlencode({**query, **changes})}"


class _Clock:
    """Stands in for the `time` module of one module under test, `offset` seconds in the future."""

    def __init__(self, offset: float):
        self.offset = offset

    def time(self) -> float:
        return time.time() + self.offset


class TestSignedUrl:
    def test_get_head_and_range(self, client, uploaded):
        url = local(uploaded["url"])
        whole = client.get(url)
        assert whole.data == DOCUMENT
        assert whole.headers["Content-Type"] == "application/pdf"
        assert whole.headers["X-Content-Type-Options"] == "nosniff"
        head = client.head(url)
        assert head.status_code == 200 and head.data == b""
        assert head.headers["Content-Length"] == str(len(DOCUMENT))
        part = client.get(url, headers={"Range": "bytes=0-7"})
        assert part.status_code == 206 and part.data == DOCUMENT[:8]
        assert part.headers["Content-Range"] == f"bytes 0-7/{len(DOCUMENT)}"

    @pytest.mark.parametrize(
        "ranges",
        ["items=0-7", "bytes=0-1,4-7", "bytes=7-0", "bytes=abc"],
        ids=["unknown unit", "several ranges", "inverted", "malformed"],
    )
    def test_a_range_not_served_as_one_byte_range_gets_the_whole_file(self, client, uploaded, ranges):
        response = client.get(local(uploaded["url"]), headers={"Range": ranges})
        assert response.status_code == 200 and response.data == DOCUMENT
        assert "Content-Range" not in response.headers

    def test_a_range_past_the_end_is_not_satisfiable(self, client, uploaded):
        response = client.get(local(uploaded["url"]), headers={"Range": f"bytes={len(DOCUMENT)}-"})
        assert response.status_code == 416
        assert response.headers["Content-Range"] == f"bytes */{len(DOCUMENT)}"

    @pytest.mark.parametrize(
        "changes",
        [
            {"signature": "A" * 43},
            {"expires": "4102444800"},
            {"filename": "other.pdf"},
            {"content_type": "text/html"},
            {"disposition": "inline"},
        ],
        ids=["signature", "expiry", "file name", "content type", "disposition"],
    )
    def test_tampered_url_is_403(self, client, uploaded, changes):
        assert error_of(client.get(with_query(uploaded["url"], **changes)))[:2] == (403, "forbidden")

    def test_other_path_with_the_same_signature_is_403(self, client, uploaded):
        parts = urlsplit(uploaded["url"])
        other = parts.path.rsplit("/", 1)[0] + "/00000000-0000-0000-0000-000000000000"
        assert client.get(f"{other}?{parts.query}").status_code == 403

    def test_expired_url_is_403(self, client, uploaded, monkeypatch):
        monkeypatch.setattr(storage.local, "time", _Clock(24 * 3600 + 1))
        assert error_of(client.get(local(uploaded["url"])))[:2] == (403, "forbidden")


class TestStableUrl:
    def test_redirects_to_a_fresh_short_lived_signed_url(self, client, uploaded):
        response = client.get(local(uploaded["stableUrl"]))
        assert response.status_code == 302
        assert response.headers["Cache-Control"] == "no-store"
        target = response.headers["Location"]
        assert client.get(local(target)).data == DOCUMENT
        expires = int(parse_qs(urlsplit(target).query)["expires"][0])
        assert expires - time.time() == pytest.approx(3600, abs=60)  # storage.url_ttl_seconds
        assert uploaded["stableUrlExpiresAt"] is None
        assert client.head(local(uploaded["stableUrl"])).status_code == 302

    @pytest.mark.parametrize(
        "query",
        ["", "sig=" + "A" * 43, "sig=short", "sig={sig}&sig={sig}", "sig={sig}&expires=9999999999"],
        ids=["none", "wrong", "malformed", "repeated", "added expiry"],
    )
    def test_invalid_signature_is_403(self, client, uploaded, query):
        sig = parse_qs(urlsplit(uploaded["stableUrl"]).query)["sig"][0]
        path = urlsplit(uploaded["stableUrl"]).path
        assert error_of(client.get(f"{path}?{query.format(sig=sig)}"))[:2] == (403, "forbidden")

    def test_signature_of_one_upload_does_not_open_another(self, client, uploaded):
        other = upload(client, seed_000_body(DOCUMENT, fileName="other.pdf")).get_json()
        query = urlsplit(uploaded["stableUrl"]).query
        assert client.get(f"/m/{other['id']}?{query}").status_code == 403

    def test_non_uuid_id_is_403(self, client):
        assert client.get("/m/nonsense?sig=" + "A" * 43).status_code == 403


class TestStableUrlWithExpiry:
    @pytest.fixture
    def settings_overrides(self):
        return {"storage": {"upload_stable_url_ttl_seconds": 30 * 24 * 3600}}

    def test_expires_when_configured(self, client, uploaded, monkeypatch):
        expires_at = datetime.fromisoformat(uploaded["stableUrlExpiresAt"].replace("Z", "+00:00"))
        assert abs(expires_at - (datetime.now(UTC) + timedelta(days=30))) < timedelta(minutes=1)
        assert "expires=" in uploaded["stableUrl"]
        assert client.get(local(uploaded["stableUrl"])).status_code == 302
        again = client.get(f"{UPLOADS}/{uploaded['id']}", headers=A).get_json()
        assert again["stableUrl"] == uploaded["stableUrl"]
        monkeypatch.setattr(media_links, "time", _Clock(30 * 24 * 3600 + 1))
        assert client.get(local(uploaded["stableUrl"])).status_code == 403


class TestMetadataAndRevocation:
    def test_get_gives_the_metadata_and_a_fresh_url(self, client, uploaded):
        response = client.get(f"{UPLOADS}/{uploaded['id']}", headers=A)
        assert response.status_code == 200
        answer = response.get_json()
        assert {key: answer[key] for key in ("id", "fileName", "contentType", "size", "sha256", "stableUrl")} == {
            key: uploaded[key] for key in ("id", "fileName", "contentType", "size", "sha256", "stableUrl")
        }
        assert client.get(local(answer["url"])).data == DOCUMENT

    def test_delete_revokes_every_link(self, client, uploaded, runtime):
        assert client.delete(f"{UPLOADS}/{uploaded['id']}", headers=A).status_code == 204
        assert error_of(client.get(local(uploaded["url"])))[:2] == (404, "not_found")
        assert error_of(client.get(local(uploaded["stableUrl"])))[:2] == (410, "gone")
        assert error_of(client.get(f"{UPLOADS}/{uploaded['id']}", headers=A))[:2] == (404, "not_found")
        assert error_of(client.delete(f"{UPLOADS}/{uploaded['id']}", headers=A))[:2] == (404, "not_found")
        blob_key = urlsplit(uploaded["url"]).path.removeprefix("/media/")
        assert runtime.blob_store.head(blob_key) is None

    def test_another_tenants_upload_is_not_found(self, client, uploaded):
        for headers in (B, {"Authorization": f"Bearer {API_KEY_B}"}):
            assert error_of(client.get(f"{UPLOADS}/{uploaded['id']}", headers=headers))[:2] == (404, "not_found")
            assert error_of(client.delete(f"{UPLOADS}/{uploaded['id']}", headers=headers))[:2] == (404, "not_found")
        assert client.get(local(uploaded["url"])).data == DOCUMENT

    @pytest.mark.parametrize("upload_id", ["nonsense", "00000000-0000-0000-0000-000000000000", "a%00b", "%F0%9F%98%80"])
    def test_unknown_id_is_not_found(self, client, upload_id):
        assert error_of(client.get(f"{UPLOADS}/{upload_id}", headers=A))[:2] == (404, "not_found")
        assert error_of(client.delete(f"{UPLOADS}/{upload_id}", headers=A))[:2] == (404, "not_found")

    def test_credentials_are_required(self, client, uploaded):
        assert client.get(f"{UPLOADS}/{uploaded['id']}").status_code == 401
        assert client.delete(f"{UPLOADS}/{uploaded['id']}").status_code == 401


class TestUrlLifetimes:
    @pytest.fixture
    def settings_overrides(self):
        return {
            "storage": {"upload_url_ttl_seconds": 2 * 3600},
            "tenants": [
                {"id": TENANT_A, "phone_numbers": [{"id": "a", "number": "+15551234567"}]},
                {
                    "id": TENANT_B,
                    "phone_numbers": [{"id": "b", "number": "+15557654321"}],
                    "upload_url_ttl_seconds": 600,
                },
            ],
        }

    @pytest.mark.parametrize(
        "headers, number_id, lifetime",
        [(A, "a", 2 * 3600), (B, "b", 600)],
        ids=["configured default", "tenant override"],
    )
    def test_configured_lifetime(self, client, headers, number_id, lifetime):
        tenant = TENANT_A if headers is A else TENANT_B
        body = seed_000_body(DOCUMENT, phoneNumberId=number_id, tenantId=tenant)
        answer = upload(client, body, headers=headers).get_json()
        expires = datetime.fromisoformat(answer["expiresAt"].replace("Z", "+00:00"))
        assert abs(expires - (datetime.now(UTC) + timedelta(seconds=lifetime))) < timedelta(minutes=1)


class TestSvgAdmittedByConfiguration:
    @pytest.fixture
    def settings_overrides(self):
        return {"media": {"allowed_types": ["image/png", "image/svg+xml"]}}

    def test_is_served_as_a_download_never_inline(self, client):
        answer = upload(client, seed_000_body(samples.svg(), fileName="logo.svg", mimeType="image/svg+xml")).get_json()
        assert answer["contentType"] == "image/svg+xml"
        for url in (answer["url"], client.get(local(answer["stableUrl"])).headers["Location"]):
            served = client.get(local(url))
            assert served.data == samples.svg()
            assert served.headers["Content-Disposition"] == 'attachment; filename="logo.svg"'
            assert "disposition=attachment" in url  # what the S3 and Azure URLs would ask for too
            assert served.headers["X-Content-Type-Options"] == "nosniff"
            assert "sandbox" in served.headers["Content-Security-Policy"]


class TestRevokedWhileServed:
    def test_a_file_revoked_once_found_is_not_found(self, client, uploaded, runtime, monkeypatch):
        """A revocation can remove the file after the store found it and before it is sent."""
        real_path = runtime.blob_store.path

        def path_then_revoked(key):
            found = real_path(key)
            runtime.uploads.revoke(runtime.uploads.find(uploaded["id"]))
            return found

        monkeypatch.setattr(runtime.blob_store, "path", path_then_revoked)
        assert error_of(client.get(local(uploaded["url"])))[:2] == (404, "not_found")


class TestStableUrlLifetimeConfiguredLater:
    """The configured lifetime holds every stable link: those made before it was configured (which carry
    no expiry) and those signed with a longer one before it was shortened."""

    @pytest.fixture(params=[None, 30 * 24 * 3600], ids=["none before", "a month before"])
    def settings_overrides(self, request):
        return {"storage": {"upload_stable_url_ttl_seconds": request.param}}

    def test_a_link_made_before_ends_with_the_lifetime_configured_now(self, uploaded, settings, monkeypatch):
        storage = settings.storage.model_copy(update={"upload_stable_url_ttl_seconds": 3600})
        later = Runtime(settings.model_copy(update={"storage": storage}))
        try:
            client = create_app(runtime=later).test_client()
            assert client.get(local(uploaded["stableUrl"])).status_code == 302
            monkeypatch.setattr(media_links, "time", _Clock(3600 + 1))
            assert error_of(client.get(local(uploaded["stableUrl"])))[:2] == (403, "forbidden")
        finally:
            later.close()
