"""The attachment pipeline end to end: a signed webhook names media on the loopback media server; the
worker (the queue runs tasks inline in tests) fetches, checks and stores it in the local blob store;
the API and the feed show the outcome. The webhook always answers 200, whatever the media does."""

from __future__ import annotations

import base64
import hashlib
import io
import re
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sqlalchemy as sa
from PIL import Image
from prometheus_client import REGISTRY

from tests.fixtures.app import USER_A
from tests.fixtures.media_server import loopback_resolver
from tests.fixtures.services import free_port
from tests.media import samples
from tests.support.scratch_space import fill_scratch_space, remove_scratch_directory
from tests.support.standard import inbound_body, post_standard
from webhook_service.database.tables import Attachment, Message
from webhook_service.media.pipeline import backoff_delay
from webhook_service.runtime import Runtime

AUTH = {"Authorization": "Basic " + base64.b64encode(":".join(USER_A).encode()).decode()}
MIB = 1024 * 1024


@pytest.fixture
def settings_overrides():
    # The queue runs each task inline when enqueued: the webhook's request does the first attempt.
    return {
        "queue": {"immediate": True},
        "media": {
            "fetch": {
                "allow_http": True,
                "allow_private_hosts": ["media.test", "other.test"],
                "connect_timeout": 1,
                "read_timeout": 1,
                "total_timeout": 1.5,
            },
            # Retries are due a moment later: the inline queue keeps them for the test to run.
            "retry_base_delay_seconds": 0.3,
            "retry_max_delay_seconds": 0.3,
            "retry_max_attempts": 4,
        },
    }


@pytest.fixture
def resolver():
    return loopback_resolver({"mixed.test": ["93.184.216.34", "10.0.0.1"], "public.test": ["93.184.216.34"]})


def send(client, *urls, declared="image/jpeg", message_id="mms-1", name=None) -> dict:
    attachments = [{"url": url, "contentType": declared, "name": name} for url in urls]
    response = post_standard(client, inbound_body(message_id, attachments=attachments))
    assert response.status_code == 200, response.get_data(as_text=True)
    return message(client, message_id)


def message(client, message_id="mms-1") -> dict:
    response = client.get(f"/api/v1/providers/standard/messages/{message_id}", headers=AUTH)
    assert response.status_code == 200
    return response.get_json()


def only_attachment(client, message_id="mms-1") -> dict:
    attachments = message(client, message_id)["attachments"]
    assert len(attachments) == 1
    return attachments[0]


def rejected(client, reason_code: str, message_id="mms-1") -> dict:
    attachment = only_attachment(client, message_id)
    assert (attachment["status"], attachment["reasonCode"]) == ("rejected", reason_code), attachment
    assert attachment["reason"] and attachment["url"] is None
    return attachment


def retry(runtime, attachment_id: str) -> str | None:
    """Run the next attempt once it is due (the tests' stand-in for the worker's scheduler)."""
    time.sleep(0.31)
    return runtime.attachments.process(attachment_id)


def download(client, url: str):
    """GET a signed local-store URL through the app."""
    path = url.split("://", 1)[1].split("/", 1)[1]
    return client.get("/" + path)


class TestStored:
    def test_image_is_fetched_sanitized_stored_and_served(self, client, media_server):
        url = media_server.serve("/photo.jpg", samples.jpeg_with_private_metadata(), content_type="image/jpeg")
        attachment = send(client, url, name="holiday photo.jpg")["attachments"][0]
        assert attachment["status"] == "stored" and attachment["contentType"] == "image/jpeg"
        response = download(client, attachment["url"])
        assert response.status_code == 200
        body = response.get_data()
        assert hashlib.sha256(body).hexdigest() == attachment["sha256"] and len(body) == attachment["size"]
        # No EXIF (GPS included) survives, and the orientation was applied before it was removed.
        image = Image.open(io.BytesIO(body))
        assert not image.getexif() and b"GPS" not in body and b"Exif" not in body
        assert image.size == (80, 40)
        assert response.headers["Content-Type"] == "image/jpeg"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert "sandbox" in response.headers["Content-Security-Policy"]
        assert response.headers["Content-Disposition"].startswith("inline")

    def test_feed_and_log_record_the_outcome(self, client, media_server, caplog):
        caplog.set_level("INFO", logger="webhook_service.media")
        send(client, media_server.serve("/a.png", samples.png(), content_type="image/png"))
        events = client.get("/api/v1/events", headers=AUTH).get_json()["events"]
        assert [e["type"] for e in events] == ["message.received", "attachment.stored"]
        stored = events[1]["data"]
        assert stored["status"] == "stored" and stored["url"] and stored["messageId"] == events[0]["data"]["id"]
        lines = [r for r in caplog.records if r.getMessage() == "attachment"]
        assert [r.fields["outcome"] for r in lines] == ["stored"]
        assert lines[0].fields["host"] == "media.test"

    def test_documents_are_served_as_downloads(self, client, media_server):
        attachment = send(
            client,
            media_server.serve("/doc.pdf", samples.pdf(), content_type="application/pdf"),
            declared="application/pdf",
            name="../../etc/passwd",
        )["attachments"][0]
        response = download(client, attachment["url"])
        assert response.status_code == 200 and response.headers["Content-Type"] == "application/pdf"
        disposition = response.headers["Content-Disposition"]
        assert disposition.startswith("attachment") and "/" not in disposition and ".." not in disposition

    def test_exactly_the_limit_is_stored_and_one_byte_more_is_rejected(self, client, media_server):
        exact = samples.pdf(5 * MIB)
        assert len(exact) == 5_242_880
        send(client, media_server.serve("/exact.pdf", exact, content_type="application/pdf"), message_id="exact")
        attachment = only_attachment(client, "exact")
        assert (attachment["status"], attachment["size"]) == ("stored", 5_242_880)
        send(
            client,
            media_server.serve("/over.pdf", samples.pdf(5 * MIB + 1), content_type="application/pdf"),
            message_id="over",
        )
        assert "5242880 bytes" in rejected(client, "too_large", "over")["reason"]

    def test_html_tail_does_not_survive(self, client, media_server):
        attachment = send(client, media_server.serve("/tail.jpg", samples.jpeg_with_html_tail()))["attachments"][0]
        assert attachment["status"] == "stored"
        assert b"<script>" not in download(client, attachment["url"]).get_data()

    def test_declared_type_is_recorded_beside_the_sniffed_one(self, client, media_server):
        attachment = send(
            client, media_server.serve("/really-a.png", samples.png(), content_type="image/jpeg"), declared="image/jpeg"
        )["attachments"][0]
        assert (attachment["declaredContentType"], attachment["contentType"]) == ("image/jpeg", "image/png")

    def test_media_credentials_go_to_their_host_only(self, client, media_server, settings, runtime):
        # A connection with media_auth for media.test; the server insists on it.
        from webhook_service.config.model import MediaAuth

        connection = runtime.connections.find("standard", "main")
        object.__setattr__(
            connection, "media_auth", MediaAuth(kind="basic", username="media", password="s3cret", hosts=["media.test"])
        )
        try:
            url = media_server.require_basic_auth(
                "/private.png", "media", "s3cret", samples.png(), content_type="image/png"
            )
            assert send(client, url)["attachments"][0]["status"] == "stored"
        finally:
            object.__setattr__(connection, "media_auth", None)


SSRF_URLS = [
    "http://127.0.0.1/x",
    "http://10.0.0.1/x",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]/x",
    "http://[::ffff:127.0.0.1]/x",
    "http://0.0.0.0/x",
    "http://2130706433/",
    "http://0x7f.1/",
    "http://mixed.test/x",
]


class TestRefused:
    @pytest.mark.parametrize("url", SSRF_URLS)
    def test_private_addresses_are_never_fetched(self, client, url):
        rejected(client, "ssrf_refused") if send(client, url) else None

    def test_public_url_redirecting_to_loopback(self, client, media_server):
        target = f"http://127.0.0.1:{media_server.http_port}/secret"
        media_server.serve("/secret", samples.png(), content_type="image/png")
        send(client, media_server.redirect("/hop", target))
        rejected(client, "ssrf_refused")
        assert media_server.requests("/secret") == []

    def test_redirect_chain_of_ten(self, client, media_server):
        for hop in range(10):
            media_server.redirect(f"/chain{hop}", media_server.url(f"/chain{hop + 1}"))
        send(client, media_server.url("/chain0"))
        rejected(client, "too_many_redirects")

    @pytest.mark.parametrize(
        "url", ["file:///etc/passwd", "ftp://media.test/x.jpg", "data:image/png;base64,iVBORw0KGgo="]
    )
    def test_other_schemes(self, client, url):
        send(client, url)
        rejected(client, "scheme_not_allowed")

    def test_content_length_1000_with_50_mb_sent(self, client, media_server):
        # Only the declared 1000 bytes are read; zeros are no allowed type.
        send(client, media_server.lying_length("/liar", declared=1000, sent=50 * MIB))
        attachment = rejected(client, "type_not_allowed")
        assert attachment["contentType"] is None

    def test_endless_body(self, client, media_server):
        send(client, media_server.endless("/endless"))
        rejected(client, "too_large")

    def test_gzip_bomb(self, client, media_server):
        send(client, media_server.gzip_bomb("/bomb", decoded_size=50 * MIB))
        rejected(client, "too_large")

    @pytest.mark.parametrize("sample, sniffed", [(samples.svg, "image/svg+xml"), (samples.html_page, "text/html")])
    def test_svg_or_html_declared_as_jpeg(self, client, media_server, sample, sniffed):
        send(client, media_server.serve("/fake.jpg", sample(), content_type="image/jpeg"))
        attachment = rejected(client, "type_not_allowed")
        assert attachment["reason"] == f"Unsupported media type: {sniffed}"

    def test_png_declaring_50000_by_50000(self, client, media_server):
        send(
            client,
            media_server.serve("/huge.png", samples.png_header_declaring(50000, 50000), content_type="image/png"),
        )
        rejected(client, "image_too_large")

    def test_permanent_http_error(self, client, media_server):
        send(client, media_server.fail("/gone", 410))
        rejected(client, "http_error")


class TestRetries:
    @pytest.mark.slow
    # A download's timing, the same on either database: on one of them, to keep the suite's time.
    @pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
    def test_trickling_server_times_out_and_ends_failed_after_the_retry_budget(self, client, media_server, runtime):
        send(client, media_server.trickle("/slow", interval=2.0))
        for _ in range(runtime.settings.media.retry_max_attempts - 1):
            assert retry(runtime, only_attachment(client)["id"]) in ("retry", "failed")
        attachment = only_attachment(client)
        assert (attachment["status"], attachment["reasonCode"]) == ("failed", "timeout")
        assert attachment["attempts"] == runtime.settings.media.retry_max_attempts
        assert "gave up after" in attachment["reason"]
        events = client.get("/api/v1/events?type=attachment.failed", headers=AUTH).get_json()["events"]
        assert len(events) == 1

    def test_the_inline_queue_never_runs_a_retry_inside_the_attempt_that_asked_for_it(
        self, client, media_server, runtime
    ):
        """A retry asked for with a time that has already passed (a thread held up on a loaded machine longer
        than the backoff): huey's inline queue ran it at once, nested in the attempt, and the test's own
        next attempt found nothing to do."""
        send(client, media_server.fail("/held-up.png", 503, times=1, then=samples.png()))
        attachment = only_attachment(client)
        assert (attachment["status"], attachment["attempts"]) == ("pending", 1)
        runtime.queue.enqueue([attachment["id"]], eta=datetime.now(UTC) - timedelta(seconds=1))
        assert only_attachment(client)["attempts"] == 1  # left for whoever runs the retries (here, the test)
        assert retry(runtime, attachment["id"]) == "stored"

    def test_media_server_down_then_up(self, client, media_server, runtime):
        url = media_server.fail("/flaky.png", 503, times=3, then=samples.png())
        send(client, url)
        attachment = only_attachment(client)
        assert (attachment["status"], attachment["reasonCode"]) == ("pending", "http_error")
        while only_attachment(client)["status"] == "pending":
            assert retry(runtime, attachment["id"]) in ("retry", "stored")
        attachment = only_attachment(client)
        assert attachment["status"] == "stored" and attachment["attempts"] == 4

    def test_nothing_listening_then_a_server_appears(self, client, runtime):
        port = free_port()
        send(client, f"http://media.test:{port}/late.png")
        assert only_attachment(client)["reasonCode"] == "connection_failed"

        class Late(BaseHTTPRequestHandler):
            def do_GET(self):
                body = samples.png()
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        server = ThreadingHTTPServer(("127.0.0.1", port), Late)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            assert retry(runtime, only_attachment(client)["id"]) == "stored"
        finally:
            server.shutdown()
            server.server_close()

    def test_a_404_right_after_the_webhook_is_retried(self, client, media_server, runtime):
        send(client, media_server.fail("/propagating.png", 404, times=1, then=samples.png()))
        assert only_attachment(client)["reasonCode"] == "not_found_yet"
        assert retry(runtime, only_attachment(client)["id"]) == "stored"

    def test_a_404_long_after_the_webhook_is_final(self, client, media_server, runtime):
        send(client, media_server.fail("/missing.png", 404))
        assert only_attachment(client)["reasonCode"] == "not_found_yet"
        # The grace period is over (the message arrived an hour ago): the next 404 is final.
        an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
        with runtime.db.transaction() as session:
            session.execute(sa.update(Message).values(received_at=an_hour_ago))
        assert retry(runtime, only_attachment(client)["id"]) == "rejected"
        assert rejected(client, "http_error")["reason"]

    def test_backoff_grows_with_jitter_and_a_ceiling(self):
        delays = [backoff_delay(attempt, 5, 900) for attempt in range(1, 12)]
        assert 2.5 <= delays[0] <= 5 and 5 <= delays[1] <= 10 and 10 <= delays[2] <= 20
        assert all(450 <= d <= 900 for d in delays[-3:])
        assert len({backoff_delay(3, 5, 900) for _ in range(20)}) > 1

    def test_operators_retry_rejected_attachments(self, client, media_server, runtime):
        send(client, media_server.fail("/fixed-later", 403, times=1, then=samples.png()))
        rejected(client, "http_error")
        assert runtime.attachments.retry([only_attachment(client)["id"]]) == [only_attachment(client)["id"]]
        # The queue runs inline in tests, so the retry has already happened.
        assert only_attachment(client)["status"] == "stored"


class TestScratchSpace:
    """A disk that fills (or goes away) under the scratch directory is this machine's passing trouble,
    not the media's: the attachment is released at once for a retry with backoff, and ends `failed`
    with the reason once the retries are spent."""

    @staticmethod
    def counted(outcome: str) -> float:
        labels = {"outcome": outcome, "reason": "scratch_space_unavailable"}
        return REGISTRY.get_sample_value("attachment_outcomes_total", labels) or 0.0

    @pytest.mark.parametrize(
        "failure, reason",
        [
            ("disk_full_while_downloading", "while writing download: No space left on device"),
            ("disk_full_while_re_encoding", r"while writing media-\w+\.png: No space left on device"),
            ("scratch_directory_gone", "while making a directory in tmp/: Not a directory"),
        ],
    )
    def test_retried_with_a_reason_then_failed(
        self, failure, reason, client, media_server, runtime, monkeypatch, caplog
    ):
        caplog.set_level("INFO", logger="webhook_service.media")
        work_dir = runtime.settings.data_dir / "tmp"
        if failure == "disk_full_while_downloading":
            fill_scratch_space(monkeypatch, work_dir)
        elif failure == "disk_full_while_re_encoding":
            fill_scratch_space(monkeypatch, work_dir, names="media-*")  # the re-encoded image's file
        else:
            remove_scratch_directory(work_dir)
        retries_before, failures_before = self.counted("retry"), self.counted("failed")

        send(client, media_server.serve("/full.png", samples.png(), content_type="image/png"))
        attachment = only_attachment(client)
        assert (attachment["status"], attachment["reasonCode"]) == ("pending", "scratch_space_unavailable")
        assert re.match(f"scratch space is unavailable {reason}", attachment["reason"]), attachment["reason"]
        assert str(work_dir) not in attachment["reason"], "no server path in what API consumers read"
        # Released at once (no lease left to run out), due again after the backoff.
        with runtime.db.reading() as session:
            row = session.scalars(sa.select(Attachment)).one()
            assert row.claimed_until is None and row.claim_token is None
            # Due again after the backoff, about half the base delay or more after the release (measured from
            # the row's own update time, not the clock now, which a loaded machine may have moved past it).
            assert row.next_attempt_at - row.updated_at >= timedelta(seconds=0.1)
        [line] = [r for r in caplog.records if r.getMessage() == "attachment"]
        assert (line.fields["outcome"], line.fields["reason"]) == ("retry", "scratch_space_unavailable")
        assert self.counted("retry") == retries_before + 1

        for _ in range(runtime.settings.media.retry_max_attempts - 1):
            assert retry(runtime, attachment["id"]) in ("retry", "failed")
        attachment = only_attachment(client)
        assert (attachment["status"], attachment["reasonCode"]) == ("failed", "scratch_space_unavailable")
        assert "gave up after 4 attempts" in attachment["reason"]
        [event] = client.get("/api/v1/events?type=attachment.failed", headers=AUTH).get_json()["events"]
        assert (event["data"]["id"], event["data"]["reasonCode"]) == (attachment["id"], "scratch_space_unavailable")
        assert self.counted("failed") == failures_before + 1
        assert caplog.records[-1].fields["outcome"] == "failed"
        if work_dir.is_dir():
            assert list(work_dir.iterdir()) == [], "every attempt removes its scratch files"

    def test_once_there_is_room_again_the_retry_stores_it(self, client, media_server, runtime, monkeypatch):
        with monkeypatch.context() as full:
            fill_scratch_space(full, runtime.settings.data_dir / "tmp")
            send(client, media_server.serve("/later.png", samples.png(), content_type="image/png"))
            assert only_attachment(client)["reasonCode"] == "scratch_space_unavailable"
        assert retry(runtime, only_attachment(client)["id"]) == "stored"


class TestNothingIsLost:
    def test_sweep_picks_up_an_attachment_whose_worker_died(self, client, media_server, runtime):
        url = media_server.serve("/swept.png", samples.png(), content_type="image/png")
        # The webhook is stored but its enqueue is lost (a queue outage):
        runtime.queue.enqueue = lambda ids, eta=None: None
        send(client, url)
        # ...then a worker claimed it and died: its lease ran out long ago.
        past = datetime.now(UTC) - timedelta(hours=1)
        assert only_attachment(client)["status"] == "pending"
        with runtime.db.transaction() as session:
            session.execute(
                sa.update(Attachment).values(claimed_until=past, claim_token="dead-worker", next_attempt_at=past)
            )
        del runtime.queue.enqueue
        assert runtime.attachments.sweep() == 1
        assert only_attachment(client)["status"] == "stored"
        assert runtime.attachments.sweep() == 0

    def test_a_worker_whose_lease_ran_out_records_nothing(self, client, media_server, runtime, monkeypatch):
        url = media_server.serve("/late.png", samples.png(), content_type="image/png")
        runtime.queue.enqueue = lambda ids, eta=None: None
        send(client, url)
        del runtime.queue.enqueue
        attachment_id = only_attachment(client)["id"]
        put_file = runtime.blob_store.put_file

        def slow_put(*args, **kwargs):
            # Meanwhile the lease ran out and a second worker claimed the attachment.
            with runtime.db.transaction() as session:
                session.execute(sa.update(Attachment).values(claim_token="second-worker"))
            return put_file(*args, **kwargs)

        monkeypatch.setattr(runtime.blob_store, "put_file", slow_put)
        assert runtime.attachments.process(attachment_id) == "lost_claim"
        # The second worker records the outcome; the first one wrote nothing to the row or the feed.
        assert only_attachment(client)["status"] == "pending"
        events = client.get("/api/v1/events", headers=AUTH).get_json()["events"]
        assert [e["type"] for e in events] == ["message.received"]

    def test_two_workers_never_process_the_same_attachment(self, client, media_server, settings, runtime):
        url = media_server.serve("/once.png", samples.png(), content_type="image/png")
        runtime.queue.enqueue = lambda ids, eta=None: None
        send(client, url)
        del runtime.queue.enqueue
        attachment_id = only_attachment(client)["id"]
        workers = [Runtime(settings, resolver=runtime.resolver) for _ in range(4)]
        barrier = threading.Barrier(len(workers))
        outcomes = []

        def work(worker):
            barrier.wait()
            outcomes.append(worker.attachments.process(attachment_id))

        threads = [threading.Thread(target=work, args=(w,)) for w in workers]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            for worker in workers:
                worker.close()
        assert sorted(outcomes, key=lambda outcome: outcome or "") == [None, None, None, "stored"]
        assert len(media_server.requests("/once.png")) == 1


class TestSignedUrls:
    def test_tampered_or_expired_urls_are_403(self, client, media_server):
        attachment = send(client, media_server.serve("/s.png", samples.png(), content_type="image/png"))["attachments"][
            0
        ]
        url = attachment["url"]
        assert download(client, url).status_code == 200
        for tampered in (
            url.replace("expires=", "expires=9"),
            url.replace("/0?", "/1?"),
            url + "&content_type=text%2Fhtml",
            url.split("&signature=")[0],
            url.replace("inline", "attachment"),
        ):
            assert download(client, tampered).status_code in (403, 404), tampered
        expired = url.split("expires=")[0] + "expires=1000" + "&" + url.split("expires=")[1].split("&", 1)[1]
        assert download(client, expired).status_code == 403

    def test_range_and_head(self, client, media_server):
        attachment = send(
            client,
            media_server.serve("/r.pdf", samples.pdf(), content_type="application/pdf"),
            declared="application/pdf",
        )["attachments"][0]
        path = "/" + attachment["url"].split("://", 1)[1].split("/", 1)[1]
        partial = client.get(path, headers={"Range": "bytes=0-3"})
        assert partial.status_code == 206 and partial.get_data() == b"%PDF"
        head = client.head(path)
        assert head.status_code == 200 and int(head.headers["Content-Length"]) == attachment["size"]
