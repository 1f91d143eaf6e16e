"""The attachment pipeline against the real remote stores (moto's S3 server, Azurite), a blob store that
is down and comes back, and the Redis-backed queue."""

from __future__ import annotations

import base64
import time
import uuid

import pytest
import requests

from tests.fixtures.app import USER_A
from tests.fixtures.blob_servers import MOTO_CREDENTIALS
from tests.fixtures.media_server import loopback_resolver
from tests.fixtures.services import free_port
from tests.media import samples
from tests.support.standard import inbound_body, post_standard

AUTH = {"Authorization": "Basic " + base64.b64encode(":".join(USER_A).encode()).decode()}
FETCH = {
    "allow_http": True,
    "allow_private_hosts": ["media.test"],
    "connect_timeout": 1,
    "read_timeout": 1,
    "total_timeout": 3,
}


@pytest.fixture
def resolver():
    return loopback_resolver()


def _attachment(client, message_id="mms-1") -> dict:
    response = client.get(f"/api/v1/providers/standard/messages/{message_id}", headers=AUTH)
    return response.get_json()["attachments"][0]


class TestRemoteStores:
    @pytest.fixture(params=["s3", "azure"])
    def settings_overrides(self, request):
        if request.param == "s3":
            store = request.getfixturevalue("make_s3_store")()
            storage = {
                "backend": "s3",
                "s3": {
                    "bucket": store.bucket,
                    "endpoint_url": request.getfixturevalue("moto_s3_endpoint"),
                    **MOTO_CREDENTIALS,
                },
            }
        else:
            store = request.getfixturevalue("make_azure_store")()
            connection_string = request.getfixturevalue("azurite_blob_endpoint")
            storage = {
                "backend": "azure",
                "azure": {"container": store.container, "connection_string": connection_string},
            }
        return {"queue": {"immediate": True}, "storage": storage, "media": {"fetch": FETCH}}

    def test_stored_in_the_configured_store_and_served_by_its_signed_url(self, client, media_server, runtime):
        body = samples.png()
        url = media_server.serve("/remote.png", body, content_type="image/png")
        assert post_standard(client, inbound_body("mms-1", attachments=[{"url": url}])).status_code == 200
        attachment = _attachment(client)
        assert attachment["status"] == "stored", attachment
        signed = attachment["url"]
        assert signed.startswith("http://127.0.0.1") and ("X-Amz-Signature" in signed or "sig=" in signed)
        response = requests.get(signed, timeout=10)
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "image/png"
        assert response.headers["Content-Disposition"].startswith("inline")
        assert len(response.content) == attachment["size"]
        assert client.get("/readyz").get_json()["checks"]["blobStore"] == "ok"


class TestBlobStoreOutage:
    @pytest.fixture
    def s3_port(self):
        return free_port()

    @pytest.fixture
    def settings_overrides(self, s3_port):
        return {
            "queue": {"immediate": True},
            "media": {"fetch": FETCH, "retry_base_delay_seconds": 0.3, "retry_max_delay_seconds": 0.3},
            "storage": {
                "backend": "s3",
                "s3": {
                    "bucket": f"outage-{uuid.uuid4().hex[:12]}",
                    "endpoint_url": f"http://127.0.0.1:{s3_port}",
                    **MOTO_CREDENTIALS,
                },
            },
        }

    def test_blob_store_down_then_up(self, client, media_server, runtime, settings, s3_port):
        from moto.server import ThreadedMotoServer

        url = media_server.serve("/waiting.png", samples.png(), content_type="image/png")
        post_standard(client, inbound_body("mms-1", attachments=[{"url": url}]))
        attachment = _attachment(client)
        assert (attachment["status"], attachment["reasonCode"]) == ("pending", "storage_unavailable")
        assert client.get("/readyz").status_code == 503

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=s3_port, verbose=False)
        server.start()
        try:
            runtime.blob_store.client.create_bucket(Bucket=settings.storage.s3.bucket)
            time.sleep(0.31)
            assert runtime.attachments.process(attachment["id"]) == "stored"
            stored = _attachment(client)
            info = runtime.blob_store.head(
                f"{settings.tenants[0].id}/" + stored["url"].split(f"/{settings.tenants[0].id}/", 1)[1].split("?", 1)[0]
            )
            assert info is not None and info.size == stored["size"]
            listed = runtime.blob_store.client.list_objects_v2(Bucket=settings.storage.s3.bucket)
            assert [item["Size"] for item in listed["Contents"]] == [stored["size"]], "nothing partial"
        finally:
            server.stop()


class TestRedisQueue:
    @pytest.fixture
    def settings_overrides(self, redis_url):
        return {"redis_url": redis_url, "queue": {"name": f"test_{uuid.uuid4().hex}"}, "media": {"fetch": FETCH}}

    def test_webhook_enqueues_in_redis_and_a_worker_stores_it(self, client, media_server, runtime):
        url = media_server.serve("/queued.png", samples.png(), content_type="image/png")
        post_standard(client, inbound_body("mms-1", attachments=[{"url": url}]))
        assert _attachment(client)["status"] == "pending"
        huey = runtime.queue.huey
        try:
            assert huey.pending_count() == 1
            task = huey.dequeue()
            huey.execute(task)
            assert _attachment(client)["status"] == "stored"
            assert client.get("/readyz").get_json()["checks"]["queue"] == "ok"
        finally:
            huey.flush()
