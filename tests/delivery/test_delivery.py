"""Push delivery end to end, on SQLite and PostgreSQL: signed webhooks go in through the intake, the
worker's turn (called here as the queue would call it) POSTs each event to a loopback receiver that
verifies it with the official standardwebhooks library, and the API shows how each attempt went."""

from __future__ import annotations

import itertools
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY
from standardwebhooks.webhooks import Webhook

from tests.delivery.conftest import LOOPBACK_DELIVERY, RETRY_SCHEDULE, A, B, listen
from tests.delivery.receiver import payload_of
from tests.fixtures.app import STANDARD_SECRET_B
from tests.media import samples
from tests.support.standard import inbound_body, post_standard, status_body
from webhook_service.database.tables import DELIVERIES, ENDPOINTS


def deliver(runtime, endpoint: dict) -> dict | None:
    return runtime.deliveries.drain(endpoint["id"])


def deliver_after_waiting(runtime, endpoint: dict, seconds: float = RETRY_SCHEDULE[0] * 1.15) -> dict | None:
    """The next turn once the retry is due (the tests' stand-in for the queue's scheduled task)."""
    time.sleep(seconds)
    return deliver(runtime, endpoint)


def attempts(client, endpoint: dict, headers=A, **query) -> list[dict]:
    response = client.get(f"/api/v1/endpoints/{endpoint['id']}/attempts", headers=headers, query_string=query)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["attempts"]


def endpoint_state(client, endpoint: dict) -> dict:
    return client.get(f"/api/v1/endpoints/{endpoint['id']}", headers=A).get_json()


class TestPayloads:
    def test_a_message_reaches_the_endpoint_signed_as_the_read_api_shows_it(self, client, runtime, receiver):
        endpoint = listen(client, receiver)
        assert endpoint["secret"].startswith("whsec_") and endpoint["eventTypes"] == []
        assert post_standard(client, inbound_body("m-1", text="hi")).status_code == 200
        assert deliver(runtime, endpoint) == {"delivered": 1}
        [received] = receiver.wait_for(1)
        payload = payload_of(received)
        message = client.get("/api/v1/providers/standard/messages/m-1", headers=A).get_json()
        assert payload == {"type": "message.received", "timestamp": payload["timestamp"], "data": message}
        assert payload["timestamp"].endswith("Z")
        assert received.headers["webhook-id"].startswith("evt_")
        assert received.headers["content-type"] == "application/json"

    def test_events_of_one_message_arrive_in_feed_order(self, client, runtime, receiver):
        endpoint = listen(client, receiver)
        post_standard(client, inbound_body("m-1"))
        post_standard(client, status_body("m-1", "delivered"))
        post_standard(client, inbound_body("m-2"))
        assert deliver(runtime, endpoint) == {"delivered": 3}
        payloads = [payload_of(r) for r in receiver.wait_for(3)]
        assert [(p["type"], p["data"]["providerMessageId"]) for p in payloads] == [
            ("message.received", "m-1"),
            ("message.status", "m-1"),
            ("message.received", "m-2"),
        ]
        events = client.get("/api/v1/events", headers=A).get_json()["events"]
        assert [r.headers["webhook-id"].split("_")[1] for r in receiver.requests()] == [e["id"] for e in events]
        # The status event carries the message as it is now, with the report in its history.
        assert payloads[1]["data"]["statusHistory"][-1]["status"] == "delivered"

    def test_only_the_event_types_asked_for_are_delivered(self, client, runtime, receiver):
        endpoint = listen(client, receiver, eventTypes=["message.status"])
        post_standard(client, inbound_body("m-1"))
        post_standard(client, status_body("m-1", "sent"))
        assert deliver(runtime, endpoint) == {"delivered": 1}
        assert [payload_of(r)["type"] for r in receiver.wait_for(1)] == ["message.status"]

    def test_an_attachment_event_carries_the_attachment_with_a_working_signed_url(
        self, client, runtime, receiver, media_server
    ):
        endpoint = listen(client, receiver, eventTypes=["attachment.stored"])
        url = media_server.serve("/a.png", samples.png(), content_type="image/png")
        post_standard(client, inbound_body("mms-1", attachments=[{"url": url, "contentType": "image/png"}]))
        message = client.get("/api/v1/providers/standard/messages/mms-1", headers=A).get_json()
        assert runtime.attachments.process(message["attachments"][0]["id"]) == "stored"
        assert deliver(runtime, endpoint) == {"delivered": 1}
        data = payload_of(receiver.wait_for(1)[0])["data"]
        stored = client.get("/api/v1/providers/standard/messages/mms-1", headers=A).get_json()["attachments"][0]
        assert {k: v for k, v in data.items() if k != "url"} == {
            **{k: v for k, v in stored.items() if k != "url"},
            "messageId": message["id"],
        }
        assert data["url"].startswith("http://localhost/media/")
        downloaded = client.get(data["url"].removeprefix("http://localhost"))
        assert downloaded.status_code == 200 and downloaded.get_data() == samples.png()

    def test_a_message_with_attachments_and_reports_arrives_as_the_read_api_shows_it(
        self, client, runtime, receiver, media_server
    ):
        endpoint = listen(client, receiver, eventTypes=["message.status"])
        url = media_server.serve("/b.png", samples.png(), content_type="image/png")
        text = 'caf\u00e9 \U0001f4e6 "quoted" \\ </script> \u2028'
        post_standard(client, inbound_body("mms-2", text=text, attachments=[{"url": url, "contentType": "image/png"}]))
        shown = client.get("/api/v1/providers/standard/messages/mms-2", headers=A).get_json()
        assert runtime.attachments.process(shown["attachments"][0]["id"]) == "stored"
        post_standard(client, status_body("mms-2", "sent"))
        post_standard(client, status_body("mms-2", "delivered"))
        assert deliver(runtime, endpoint) == {"delivered": 2}
        received = receiver.wait_for(2)
        shown = client.get("/api/v1/providers/standard/messages/mms-2", headers=A).get_json()
        for request in received:
            payload = payload_of(request)
            # The body is the compact JSON of the envelope, characters beyond ASCII as UTF-8.
            assert request.body == json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
            data = payload["data"]
            # Attachment URLs are signed afresh at each read: the same apart from that.
            assert data["attachments"][0].pop("url").startswith("http://localhost/media/")
            assert data == {
                **shown,
                "attachments": [{k: v for k, v in a.items() if k != "url"} for a in shown["attachments"]],
            }
            assert data["text"] == text and len(data["statusHistory"]) == 2

    def test_another_tenants_events_never_reach_an_endpoint(self, client, runtime, receiver):
        theirs = listen(client, receiver, "/b", headers=B)
        post_standard(client, inbound_body("m-1"))
        assert deliver(runtime, theirs) == {}
        assert receiver.requests() == []


class TestSignatures:
    def test_every_attempt_has_the_same_webhook_id_and_a_fresh_signature(self, client, runtime, receiver):
        endpoint = listen(client, receiver)
        receiver.answer("/hook", 500, b"try again")
        post_standard(client, inbound_body("m-1"))
        assert deliver(runtime, endpoint) == {"retry": 1}
        time.sleep(1.1)  # the next attempt falls in another second, so its timestamp differs
        receiver.answer("/hook", 200, b"thanks")
        assert deliver(runtime, endpoint) == {"delivered": 1}
        first, second = receiver.wait_for(2)
        assert first.verified and second.verified
        assert first.headers["webhook-id"] == second.headers["webhook-id"]
        assert first.headers["webhook-timestamp"] != second.headers["webhook-timestamp"]
        assert first.headers["webhook-signature"] != second.headers["webhook-signature"]
        assert first.body == second.body

    def test_after_a_rotation_both_secrets_sign_for_a_day(self, client, runtime, receiver):
        endpoint = listen(client, receiver)
        rotated = client.post(f"/api/v1/endpoints/{endpoint['id']}/rotate-secret", headers=A).get_json()
        assert rotated["secret"] != endpoint["secret"] and rotated["secret"].startswith("whsec_")
        expires = datetime.fromisoformat(rotated["previousSecretExpiresAt"])
        assert timedelta(hours=23) < expires - datetime.now(UTC) <= timedelta(hours=24)
        post_standard(client, inbound_body("m-1"))
        deliver(runtime, endpoint)
        [received] = receiver.wait_for(1)
        signatures = received.headers["webhook-signature"].split(" ")
        assert len(signatures) == 2 and all(s.startswith("v1,") for s in signatures)
        for secret in (endpoint["secret"], rotated["secret"]):
            Webhook(secret).verify(received.body, received.headers)
        assert "secret" not in endpoint_state(client, endpoint)

    def test_once_the_day_is_over_only_the_new_secret_signs(self, client, runtime, receiver):
        endpoint = listen(client, receiver)
        rotated = client.post(f"/api/v1/endpoints/{endpoint['id']}/rotate-secret", headers=A).get_json()
        with runtime.db.writing() as conn:
            conn.execute(
                sa.update(ENDPOINTS).values(previous_secret_expires_at=datetime.now(UTC) - timedelta(seconds=1))
            )
        post_standard(client, inbound_body("m-1"))
        deliver(runtime, endpoint)
        [received] = receiver.wait_for(1)
        assert len(received.headers["webhook-signature"].split(" ")) == 1
        Webhook(rotated["secret"]).verify(received.body, received.headers)


class TestRetries:
    def test_failures_are_retried_on_the_schedule_then_the_delivery_fails(self, client, runtime, receiver):
        endpoint = listen(client, receiver)
        receiver.answer("/hook", 503, b"x" * 5000)
        post_standard(client, inbound_body("m-1"))
        outcomes = [deliver(runtime, endpoint)]
        for _ in RETRY_SCHEDULE:
            outcomes.append(deliver_after_waiting(runtime, endpoint))
        # Three failures in a row pause the endpoint for the schedule's first wait: the same as the retry's.
        assert outcomes == [{"retry": 1}, {"retry": 1}, {"retry": 1}, {"failed": 1}]
        assert deliver_after_waiting(runtime, endpoint) == {}
        listed = attempts(client, endpoint)
        assert [a["attempt"] for a in listed] == [4, 3, 2, 1]  # newest first
        assert [a["outcome"] for a in listed] == ["failed", "retry", "retry", "retry"]
        assert {a["httpStatus"] for a in listed} == {503} and {a["errorCode"] for a in listed} == {None}
        assert listed[0]["responseBody"] == "x" * 1024  # the first KiB only
        assert all(a["latencyMs"] >= 0 for a in listed)
        with runtime.db.reading() as session:
            row = session.execute(sa.select(DELIVERIES)).one()
        assert (row.status, row.attempts, row.last_http_status, row.last_error) == ("failed", 4, 503, "http_503")

    def test_attempts_are_paged_with_a_cursor_and_filtered_by_event(self, client, runtime, receiver):
        endpoint = listen(client, receiver)
        for number in range(3):
            post_standard(client, inbound_body(f"m-{number}"))
        deliver(runtime, endpoint)
        response = client.get(f"/api/v1/endpoints/{endpoint['id']}/attempts?limit=2", headers=A).get_json()
        assert len(response["attempts"]) == 2 and response["nextCursor"]
        rest = client.get(
            f"/api/v1/endpoints/{endpoint['id']}/attempts?limit=2&cursor={response['nextCursor']}", headers=A
        ).get_json()
        assert len(rest["attempts"]) == 1 and rest["nextCursor"] is None
        event_id = rest["attempts"][0]["eventId"]
        assert [a["eventId"] for a in attempts(client, endpoint, eventId=event_id)] == [event_id]

    def test_three_failures_in_a_row_pause_the_endpoint_and_a_success_ends_the_pause(self, client, runtime, receiver):
        endpoint = listen(client, receiver)
        receiver.answer("/hook", 500)
        for number in range(5):
            post_standard(client, inbound_body(f"m-{number}"))
        assert deliver(runtime, endpoint) == {"retry": 3}  # the last two wait for the pause to end
        assert len(receiver.requests()) == 3
        with runtime.db.reading() as session:
            paused_until = session.execute(
                sa.select(ENDPOINTS.c.paused_until).where(ENDPOINTS.c.id == endpoint["id"])
            ).scalar_one()
        asked_at = datetime.now(UTC)
        outcome = deliver(runtime, endpoint)
        # Paused: nothing is sent (unless this turn came after the short pause of the tests' schedule, as
        # on a machine busy enough to take that long between two statements).
        assert outcome == {} or asked_at >= paused_until, (outcome, asked_at, paused_until)
        receiver.answer("/hook", 200)
        # Once the pause is over, the oldest due delivery goes first, and its success lets the rest go.
        assert deliver_after_waiting(runtime, endpoint) == {"delivered": 5}
        ids = [r.headers["webhook-id"] for r in receiver.requests()[3 + sum(outcome.values()) :]]
        assert ids == sorted(ids, key=lambda i: int(i.split("_")[1]))
        assert endpoint_state(client, endpoint)["failingSince"] is None

    def test_410_gone_disables_the_endpoint_and_announces_it(self, client, runtime, receiver):
        gone = listen(client, receiver, "/gone?token=CREDENTIAL-123&Sig=S-456")
        watcher = listen(client, receiver, "/watch", eventTypes=["endpoint.disabled"])
        receiver.answer("/gone", 410)
        post_standard(client, inbound_body("m-1"))
        post_standard(client, inbound_body("m-2"))
        assert deliver(runtime, gone) == {"disabled": 1}
        state = endpoint_state(client, gone)
        assert state["enabled"] is False and "410" in state["disabledReason"]
        with runtime.db.reading() as session:
            statuses = sorted(
                session.scalars(sa.select(DELIVERIES.c.status).where(DELIVERIES.c.endpoint_id == gone["id"]))
            )
        assert statuses == ["failed", "failed"]  # the one answered 410, and the one never sent
        assert deliver(runtime, gone) is None  # a disabled endpoint gets no turn
        assert deliver(runtime, watcher) == {"delivered": 1}
        announced = payload_of(receiver.wait_for(1, "/watch")[0])
        assert announced["type"] == "endpoint.disabled"
        assert announced["data"]["id"] == gone["id"] and announced["data"]["enabled"] is False
        assert "secret" not in announced["data"]
        # The URL's query is often its credential: shown to the tenant's other endpoints, values redacted.
        assert announced["data"]["url"] == gone["url"].split("?")[0] + "?token=%5Bredacted%5D&Sig=%5Bredacted%5D"
        feed = client.get("/api/v1/events?type=endpoint.disabled", headers=A).get_json()["events"]
        assert len(feed) == 1 and feed[0]["data"]["url"] == announced["data"]["url"]

    @pytest.mark.parametrize("settings_overrides", [{"delivery": {**LOOPBACK_DELIVERY, "disable_after_hours": 0.0002}}])
    def test_an_endpoint_failing_for_disable_after_hours_is_disabled(self, client, runtime, receiver):
        endpoint = listen(client, receiver)
        receiver.answer("/hook", 500)
        post_standard(client, inbound_body("m-1"))
        assert deliver(runtime, endpoint) == {"retry": 1}
        time.sleep(0.75)  # 0.0002 hours
        assert deliver(runtime, endpoint) == {"disabled": 1}
        assert "failed for 0.0002 hours" in endpoint_state(client, endpoint)["disabledReason"]


class TestRateLimit:
    def test_deliveries_keep_to_the_rate_limit(self, client, runtime, receiver):
        endpoint = listen(client, receiver, rateLimitPerSecond=10)
        for number in range(6):
            post_standard(client, inbound_body(f"m-{number}"))
        assert deliver(runtime, endpoint) == {"delivered": 6}
        # Paced at the sender: each attempt 0.1 s after the one before, as the attempts record it (the
        # receiver's arrival times add its own scheduling, which a busy machine stretches by tens of ms).
        sent = sorted(datetime.fromisoformat(a["attemptedAt"]) for a in attempts(client, endpoint))
        gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(sent)]
        assert min(gaps) >= 0.099, gaps
        arrivals = [r.at for r in receiver.wait_for(6)]
        # And not a burst on the way (a burst arrives within milliseconds). Not 0.5: a busy machine held
        # up the receiver's first arrival by 57 ms while the rest came on time, a span of 0.444 s.
        assert arrivals[-1] - arrivals[0] >= 0.3, arrivals


class TestTurnTime:
    # The receiver takes 0.4 s to answer and a turn lasts 0.3 s: every turn is out of time after one attempt.
    @pytest.mark.parametrize("settings_overrides", [{"delivery": {**LOOPBACK_DELIVERY, "turn_seconds": 0.3}}])
    def test_a_turn_out_of_time_makes_way_and_asks_for_the_next(self, client, runtime, receiver):
        endpoint = listen(client, receiver)
        receiver.answer("/hook", 204, delay=0.4)
        for number in range(3):
            post_standard(client, inbound_body(f"m-{number}"))
        waiting = runtime.queue.huey.pending_count()
        assert deliver(runtime, endpoint) == {"delivered": 1}
        assert runtime.queue.huey.pending_count() == waiting + 1  # the endpoint's next turn, at once
        assert deliver(runtime, endpoint) == {"delivered": 1}
        assert deliver(runtime, endpoint) == {"delivered": 1}
        assert deliver(runtime, endpoint) == {}
        delivered = [payload_of(r)["data"]["providerMessageId"] for r in receiver.requests("/hook")]
        assert delivered == ["m-0", "m-1", "m-2"]

    # So short that reading the batch always takes longer: the turn still sends its first delivery.
    @pytest.mark.parametrize("settings_overrides", [{"delivery": {**LOOPBACK_DELIVERY, "turn_seconds": 0.000001}}])
    def test_a_turn_whose_database_work_outlasts_it_still_moves_the_endpoint_on(self, client, runtime, receiver):
        endpoint = listen(client, receiver)
        for number in range(2):
            post_standard(client, inbound_body(f"m-{number}"))
        assert deliver(runtime, endpoint) == {"delivered": 1}
        assert deliver(runtime, endpoint) == {"delivered": 1}
        assert [payload_of(r)["data"]["providerMessageId"] for r in receiver.wait_for(2)] == ["m-0", "m-1"]


class TestReplay:
    def test_replay_by_event_ids_and_since_sends_them_again_with_the_same_webhook_id(self, client, runtime, receiver):
        endpoint = listen(client, receiver)
        post_standard(client, inbound_body("m-1"))
        post_standard(client, inbound_body("m-2"))
        deliver(runtime, endpoint)
        first = receiver.wait_for(2)
        event_id = first[0].headers["webhook-id"].split("_")[1]
        response = client.post(f"/api/v1/endpoints/{endpoint['id']}/replay", json={"eventIds": [event_id]}, headers=A)
        assert response.status_code == 202 and response.get_json() == {"replayed": 1}
        assert deliver(runtime, endpoint) == {"delivered": 1}
        again = receiver.wait_for(3)[2]
        assert again.headers["webhook-id"] == first[0].headers["webhook-id"] and again.body == first[0].body
        since = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
        response = client.post(f"/api/v1/endpoints/{endpoint['id']}/replay", json={"since": since}, headers=A)
        assert response.get_json() == {"replayed": 2}
        assert deliver(runtime, endpoint) == {"delivered": 2}

    def test_replay_reaches_events_from_before_the_endpoint_existed(self, client, runtime, receiver):
        post_standard(client, inbound_body("old"))
        endpoint = listen(client, receiver)
        assert deliver(runtime, endpoint) == {}  # a new endpoint starts at the end of the feed
        response = client.post(
            f"/api/v1/endpoints/{endpoint['id']}/replay", json={"since": "2020-01-01T00:00:00Z"}, headers=A
        )
        assert response.get_json() == {"replayed": 1}
        assert deliver(runtime, endpoint) == {"delivered": 1}
        assert payload_of(receiver.wait_for(1)[0])["data"]["providerMessageId"] == "old"

    def test_replay_never_reaches_another_tenants_events(self, client, runtime, receiver):
        post_standard(client, inbound_body("theirs"), connection="other", secret=STANDARD_SECRET_B)
        endpoint = listen(client, receiver)
        response = client.post(
            f"/api/v1/endpoints/{endpoint['id']}/replay", json={"since": "2020-01-01T00:00:00Z"}, headers=A
        )
        assert response.get_json() == {"replayed": 0}


class TestEnabling:
    def test_disabling_gives_up_pending_deliveries_and_enabling_starts_at_the_end_of_the_feed(
        self, client, runtime, receiver
    ):
        endpoint = listen(client, receiver)
        post_standard(client, inbound_body("m-1"))
        response = client.patch(f"/api/v1/endpoints/{endpoint['id']}", json={"enabled": False}, headers=A)
        assert response.status_code == 200 and response.get_json()["enabled"] is False
        assert deliver(runtime, endpoint) is None
        post_standard(client, inbound_body("m-2"))
        client.patch(f"/api/v1/endpoints/{endpoint['id']}", json={"enabled": True}, headers=A)
        post_standard(client, inbound_body("m-3"))
        assert deliver(runtime, endpoint) == {"delivered": 1}
        assert payload_of(receiver.wait_for(1)[0])["data"]["providerMessageId"] == "m-3"

    def test_a_deleted_endpoint_gets_nothing(self, client, runtime, receiver):
        endpoint = listen(client, receiver)
        post_standard(client, inbound_body("m-1"))
        assert client.delete(f"/api/v1/endpoints/{endpoint['id']}", headers=A).status_code == 204
        assert deliver(runtime, endpoint) is None
        assert client.get(f"/api/v1/endpoints/{endpoint['id']}", headers=A).status_code == 404


class TestMetrics:
    def test_attempts_latency_and_backlog_age_are_exported(self, client, runtime, receiver):
        endpoint = listen(client, receiver)
        receiver.answer("/hook", 503)

        def sample(name: str, **labels: str) -> float:
            return REGISTRY.get_sample_value(name, labels) or 0.0

        before = sample("delivery_attempts_total", outcome="retry", reason="http_5xx")
        latencies = sample("delivery_attempt_seconds_count")
        post_standard(client, inbound_body("m-1"))
        deliver(runtime, endpoint)
        assert sample("delivery_attempts_total", outcome="retry", reason="http_5xx") == before + 1
        assert sample("delivery_attempt_seconds_count") == latencies + 1
        assert sample("delivery_backlog_age_seconds", endpoint=endpoint["id"]) > 0  # the event waits
        receiver.answer("/hook", 204)
        deliver_after_waiting(runtime, endpoint)
        assert sample("delivery_backlog_age_seconds", endpoint=endpoint["id"]) == 0
        scraped = client.get("/metrics").get_data(as_text=True)
        assert f'delivery_backlog_age_seconds{{endpoint="{endpoint["id"]}"}} 0.0' in scraped
        assert 'delivery_attempts_total{outcome="delivered",reason="none"}' in scraped


class TestChangesDuringATurn:
    def test_an_endpoint_deleted_during_a_turn_ends_it_quietly(self, client, runtime, receiver):
        endpoint = listen(client, receiver)
        for number in range(3):
            post_standard(client, inbound_body(f"m-{number}"))

        def delete(_payload) -> None:
            with runtime.db.writing() as conn:
                conn.execute(sa.delete(ENDPOINTS))

        receiver.on_request("/hook", delete)
        outcomes = deliver(runtime, endpoint)  # no error: its outcomes went with it
        assert outcomes and sum(outcomes.values()) >= 1
        with runtime.db.reading() as session:
            assert session.execute(sa.select(DELIVERIES)).all() == []

    def test_an_endpoint_disabled_during_a_turn_takes_no_more_events(self, client, runtime, receiver):
        endpoint = listen(client, receiver)
        post_standard(client, inbound_body("m-0"))

        def disable(_payload) -> None:
            response = client.patch(f"/api/v1/endpoints/{endpoint['id']}", json={"enabled": False}, headers=A)
            assert response.status_code == 200
            post_standard(client, inbound_body("m-later"))

        receiver.on_request("/hook", disable)
        assert deliver(runtime, endpoint) == {"delivered": 1}
        with runtime.db.reading() as session:
            rows = session.execute(sa.select(DELIVERIES.c.status)).all()
        assert [row.status for row in rows] == ["delivered"]  # m-later was never taken
        assert deliver(runtime, endpoint) is None
