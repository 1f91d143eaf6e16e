"""The read API: authentication, tenant isolation, filters, cursor pagination and the event feed."""

from __future__ import annotations

import base64

import pytest
import sqlalchemy as sa

from tests.fixtures.app import API_KEY_A, API_KEY_B, STANDARD_SECRET_B, USER_A, USER_B
from tests.support.standard import inbound_body, post_standard, status_body


def basic(user: tuple[str, str]) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(":".join(user).encode()).decode()}


A = basic(USER_A)
B = basic(USER_B)


def _seed(client) -> None:
    """Tenant A: three inbound messages and one outbound with statuses; tenant B: one message."""
    post_standard(client, inbound_body("a-1", sender="+15550000001", text="one"))
    post_standard(client, inbound_body("a-2", sender="+15550000002", text="two", to=("+15551234567", "+15559990000")))
    post_standard(client, inbound_body("a-3", sender="+15550000001", text="three"))
    post_standard(client, status_body("a-out", "sent"))
    post_standard(client, status_body("a-out", "delivered"))
    post_standard(client, inbound_body("b-1", text="tenant b"), connection="other", secret=STANDARD_SECRET_B)


class TestAuthentication:
    @pytest.mark.parametrize(
        "headers",
        [
            {},
            basic(("your-email@example.com", "wrong")),
            basic(("nobody@example.com", "your-password")),
            {"Authorization": "Basic not-base64!"},
            {"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()},
            {"Authorization": "Bearer wrong-key"},
            {"Authorization": "Bearer"},
            {"Authorization": "Digest abc"},
        ],
        ids=[
            "none",
            "wrong password",
            "unknown user",
            "bad base64",
            "no colon",
            "wrong key",
            "empty bearer",
            "other scheme",
        ],
    )
    def test_refused_with_a_json_401_and_a_challenge(self, client, headers):
        response = client.get("/api/v1/messages", headers=headers)
        assert response.status_code == 401
        assert response.get_json()["error"]["code"] == "unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Basic")

    def test_basic_and_bearer_both_work(self, client):
        _seed(client)
        assert client.get("/api/v1/messages", headers=A).status_code == 200
        bearer = client.get("/api/v1/messages", headers={"Authorization": f"Bearer {API_KEY_A}"})
        assert bearer.status_code == 200
        assert len(bearer.get_json()["messages"]) == 4


class TestTenantIsolation:
    def test_another_tenants_message_is_not_found(self, client):
        _seed(client)
        own = client.get("/api/v1/providers/standard/messages/b-1", headers=B).get_json()
        assert own["text"] == "tenant b"
        assert client.get(f"/api/v1/messages/{own['id']}", headers=A).status_code == 404
        assert client.get("/api/v1/providers/standard/messages/b-1", headers=A).status_code == 404
        listed = client.get("/api/v1/messages", headers=A).get_json()["messages"]
        assert "b-1" not in {m["providerMessageId"] for m in listed}
        b_listed = client.get("/api/v1/messages", headers={"Authorization": f"Bearer {API_KEY_B}"}).get_json()
        assert [m["providerMessageId"] for m in b_listed["messages"]] == ["b-1"]

    def test_the_feed_is_per_tenant(self, client):
        _seed(client)
        events = client.get("/api/v1/events", headers=B).get_json()["events"]
        assert [e["data"]["providerMessageId"] for e in events] == ["b-1"]


class TestMessages:
    def test_filters(self, client):
        _seed(client)

        def ids(query: str) -> list[str]:
            response = client.get(f"/api/v1/messages?{query}", headers=A)
            assert response.status_code == 200, response.get_data(as_text=True)
            return [m["providerMessageId"] for m in response.get_json()["messages"]]

        assert ids("") == ["a-out", "a-3", "a-2", "a-1"]
        assert ids("direction=inbound") == ["a-3", "a-2", "a-1"]
        assert ids("direction=outbound&status=delivered") == ["a-out"]
        assert ids("from=%2B15550000001") == ["a-3", "a-1"]
        assert ids("from=(555)%20000-0002") == ["a-2"]
        assert ids("to=%2B15559990000") == ["a-2"]
        assert ids("provider=standard&providerMessageId=a-2") == ["a-2"]
        assert ids("since=2000-01-01T00:00:00Z&until=2999-01-01T00:00:00Z") == ["a-out", "a-3", "a-2", "a-1"]
        assert ids("until=2000-01-01T00:00:00Z") == []

    @pytest.mark.parametrize(
        "query, message",
        [
            ("direction=sideways", "direction"),
            ("status=lost", "status"),
            ("limit=0", "limit"),
            ("limit=abc", "limit"),
            ("cursor=xyz", "cursor"),
            ("since=yesterday", "since"),
        ],
    )
    def test_bad_parameters_are_400(self, client, query, message):
        response = client.get(f"/api/v1/messages?{query}", headers=A)
        assert response.status_code == 400
        assert response.get_json()["error"]["message"].startswith(message)

    def test_cursor_pagination_visits_every_message_once(self, client):
        for index in range(7):
            post_standard(client, inbound_body(f"p-{index}"))
        seen, cursor = [], None
        while True:
            query = "limit=3" + (f"&cursor={cursor}" if cursor else "")
            page = client.get(f"/api/v1/messages?{query}", headers=A).get_json()
            seen += [m["providerMessageId"] for m in page["messages"]]
            cursor = page["nextCursor"]
            if cursor is None:
                break
        assert seen == [f"p-{index}" for index in reversed(range(7))]

    def test_unknown_id_is_404_json(self, client):
        response = client.get("/api/v1/messages/does-not-exist", headers=A)
        assert response.status_code == 404
        assert response.get_json() == {"error": {"code": "not_found", "message": "No such message."}}

    def test_unknown_route_and_wrong_method_are_json(self, client):
        assert client.get("/api/v1/nothing", headers=A).get_json()["error"]["code"] == "not_found"
        response = client.delete("/api/v1/messages", headers=A)
        assert response.status_code == 405 and response.get_json()["error"]["code"] == "method_not_allowed"


class TestEventFeed:
    def test_ordered_complete_and_resumable(self, client):
        _seed(client)
        everything = client.get("/api/v1/events", headers=A).get_json()
        types = [(e["type"], e["data"]["providerMessageId"]) for e in everything["events"]]
        assert types == [
            ("message.received", "a-1"),
            ("message.received", "a-2"),
            ("message.received", "a-3"),
            ("message.status", "a-out"),
            ("message.status", "a-out"),
        ]
        ids = [int(e["id"]) for e in everything["events"]]
        assert ids == sorted(ids)
        # Read again in pages of two from the start: the same events, once each.
        seen, cursor = [], "0"
        while True:
            page = client.get(f"/api/v1/events?after={cursor}&limit=2", headers=A).get_json()
            if not page["events"]:
                break
            seen += [e["id"] for e in page["events"]]
            cursor = page["nextCursor"]
        assert seen == [e["id"] for e in everything["events"]]
        # Caught up: the cursor stays where it is.
        assert client.get(f"/api/v1/events?after={cursor}", headers=A).get_json() == {
            "events": [],
            "nextCursor": cursor,
        }
        post_standard(client, inbound_body("a-4"))
        new = client.get(f"/api/v1/events?after={cursor}", headers=A).get_json()["events"]
        assert [e["data"]["providerMessageId"] for e in new] == ["a-4"]

    def test_a_filtered_poll_moves_past_what_it_read(self, client, runtime):
        """A consumer that polls for one type: a page that is not full has read every event up to the
        tenant's last, so its cursor moves there and the next poll does not read those again. Events of
        that type still arrive exactly once; another tenant's events do not move the cursor (nor show in
        it)."""
        _seed(client)
        everything = [int(e["id"]) for e in client.get("/api/v1/events", headers=A).get_json()["events"]]
        rare = "attachment.failed"
        page = client.get(f"/api/v1/events?type={rare}", headers=A).get_json()
        assert page == {"events": [], "nextCursor": str(everything[-1])}
        post_standard(client, inbound_body("b-2"), connection="other", secret=STANDARD_SECRET_B)
        again = client.get(f"/api/v1/events?type={rare}&after={page['nextCursor']}", headers=A).get_json()
        assert again == {"events": [], "nextCursor": page["nextCursor"]}

        post_standard(client, status_body("a-out", "read"))
        post_standard(client, inbound_body("a-5"))
        statuses = client.get(f"/api/v1/events?type=message.status&after={page['nextCursor']}", headers=A).get_json()
        assert [e["data"]["status"] for e in statuses["events"]] == ["read"]
        head = client.get(f"/api/v1/events?after={page['nextCursor']}", headers=A).get_json()["events"][-1]["id"]
        assert statuses["nextCursor"] == head  # past a-5's event, which it read and left out
        # A full page stops at its last event, whatever comes after it.
        full = client.get("/api/v1/events?type=message.received&limit=2", headers=A).get_json()
        assert full["nextCursor"] == full["events"][-1]["id"] == str(everything[1])

    def test_a_cursor_past_the_head_stays_where_it_is(self, client):
        _seed(client)
        assert client.get("/api/v1/events?after=999999999", headers=A).get_json() == {
            "events": [],
            "nextCursor": "999999999",
        }

    def test_a_poll_that_finds_nothing_new_reads_only_the_tenants_last_event(self, client, runtime):
        """Most polls of a consumer that polls often find nothing new: such a poll reads the tenant's last
        event and nothing else, not the feed's head (on PostgreSQL, the sequence and the server's lock
        table) nor the events."""
        _seed(client)
        cursor = client.get("/api/v1/events", headers=A).get_json()["nextCursor"]
        statements: list[str] = []

        def note(_connection, _cursor, statement, *_rest) -> None:
            statements.append(statement)

        def poll(after: str) -> tuple[dict, list[str]]:
            statements.clear()
            sa.event.listen(runtime.db.engine, "before_cursor_execute", note)
            try:
                return client.get(f"/api/v1/events?after={after}", headers=A).get_json(), list(statements)
            finally:
                sa.event.remove(runtime.db.engine, "before_cursor_execute", note)

        page, read = poll(cursor)
        assert page == {"events": [], "nextCursor": cursor}
        assert len([s for s in read if "events" in s]) == 1
        assert not [s for s in read if "pg_locks" in s or "events_id_seq" in s]

        post_standard(client, inbound_body("a-9"))
        page, read = poll(cursor)
        assert [e["data"]["providerMessageId"] for e in page["events"]] == ["a-9"]
        if runtime.db.dialect == "postgresql":  # something new: read up to the feed's head
            assert [s for s in read if "pg_locks" in s]

    def test_status_events_say_whether_they_applied(self, client):
        _seed(client)
        post_standard(client, status_body("a-out", "sent", occurred_at="2030-01-01T00:00:00Z"))
        events = client.get("/api/v1/events?type=message.status", headers=A).get_json()["events"]
        assert [(e["data"]["status"], e["data"]["applied"], e["data"]["currentStatus"]) for e in events] == [
            ("sent", True, "sent"),
            ("delivered", True, "delivered"),
            ("sent", False, "delivered"),
        ]

    def test_unknown_type_filter_is_400(self, client):
        assert client.get("/api/v1/events?type=message.deleted", headers=A).status_code == 400
