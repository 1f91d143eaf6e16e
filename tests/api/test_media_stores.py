"""Uploads against the real remote stores (moto's S3 server, Azurite): the returned URL is the store's own
(S3 presigned GET, Azure read-only SAS), serves the stored bytes and type to any HTTP client, and stops
working once the upload is deleted. (The local store: test_media_links.py and test_media_seed_clients.py.)"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
import requests
import sqlalchemy as sa

from tests.fixtures.blob_servers import MOTO_CREDENTIALS
from tests.fixtures.services import free_port
from tests.media import samples
from tests.support.media_uploads import UPLOADS, A, local, seed_000_body, seed_001_body, upload
from webhook_service.database.tables import MediaUpload

DOCUMENT = samples.pdf(8192)


@pytest.fixture(params=["s3", "azure"])
def settings_overrides(request):
    # Seven days and a bit: S3 caps presigned URLs at seven days, Azure with an account key does not.
    storage = {"upload_url_ttl_seconds": 8 * 24 * 3600}
    if request.param == "s3":
        store = request.getfixturevalue("make_s3_store")()
        storage |= {
            "backend": "s3",
            "s3": {
                "bucket": store.bucket,
                **MOTO_CREDENTIALS,
                "endpoint_url": request.getfixturevalue("moto_s3_endpoint"),
            },
        }
    else:
        store = request.getfixturevalue("make_azure_store")()
        storage |= {
            "backend": "azure",
            "azure": {
                "container": store.container,
                "connection_string": request.getfixturevalue("azurite_blob_endpoint"),
            },
        }
    return {"storage": storage}


def test_the_stores_signed_url_serves_the_upload_until_it_is_deleted(client, settings):
    response = upload(client, seed_000_body(DOCUMENT, fileName="terms.pdf", mimeType="application/pdf"))
    assert response.status_code == 201, response.get_data(as_text=True)
    answer = response.get_json()
    url = answer["url"]
    backend = settings.storage.backend
    assert ("X-Amz-Signature=" in url) if backend == "s3" else ("sig=" in url and "sp=r" in url)
    fetched = requests.get(url, timeout=10)
    assert fetched.status_code == 200
    assert fetched.content == DOCUMENT and hashlib.sha256(fetched.content).hexdigest() == answer["sha256"]
    assert fetched.headers["Content-Type"] == "application/pdf"
    assert fetched.headers["Content-Disposition"] == 'attachment; filename="terms.pdf"'
    expires = datetime.fromisoformat(answer["expiresAt"].replace("Z", "+00:00"))
    expected_lifetime = timedelta(days=7) if backend == "s3" else timedelta(days=8)
    assert abs(expires - (datetime.now(UTC) + expected_lifetime)) < timedelta(minutes=1)

    redirect = client.get(local(answer["stableUrl"]))
    assert redirect.status_code == 302 and urlsplit(redirect.headers["Location"]).netloc == urlsplit(url).netloc
    assert requests.get(redirect.headers["Location"], timeout=10).content == DOCUMENT

    assert client.delete(f"{UPLOADS}/{answer['id']}", headers=A).status_code == 204
    # S3 answers a missing key 403 unless the URL's signer may list the bucket; Azure answers 404.
    assert requests.get(url, timeout=10).status_code in ((403, 404) if backend == "s3" else (404,))
    assert client.get(local(answer["stableUrl"])).status_code == 410


def test_images_are_served_inline_with_their_sniffed_type(client):
    answer = upload(client, seed_001_body(samples.png(), fileName="logo.jpg", contentType="image/jpeg")).get_json()
    fetched = requests.get(answer["uri"], timeout=10)
    assert fetched.headers["Content-Type"] == "image/png"
    assert fetched.headers["Content-Disposition"] == 'inline; filename="logo.jpg"'
    assert len(fetched.content) == answer["size"]


class TestStoreOutage:
    @pytest.fixture
    def settings_overrides(self):
        # Nothing listens on this port: every S3 call is refused.
        return {
            "storage": {
                "backend": "s3",
                "s3": {"bucket": "unreachable", **MOTO_CREDENTIALS, "endpoint_url": f"http://127.0.0.1:{free_port()}"},
            }
        }

    def test_upload_is_answered_503_and_nothing_is_recorded(self, client, runtime):
        response = upload(client, seed_000_body(DOCUMENT))
        assert response.status_code == 503
        assert response.get_json()["error"]["code"] == "storage_unavailable"
        assert response.headers["Retry-After"] == "5"
        with runtime.db.reading() as session:
            assert session.scalar(sa.select(sa.func.count()).select_from(MediaUpload)) == 0
        assert list(runtime.work_dir.iterdir()) == []
