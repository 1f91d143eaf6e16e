"""`webhook-service deliveries`, run through click against the database the test app writes to: list
deliveries and endpoints, retry failed deliveries, replay events."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from tests.delivery.conftest import RETRY_SCHEDULE, A, listen
from tests.support.standard import inbound_body, post_standard
from webhook_service.cli.main import cli
from webhook_service.database.tables import DELIVERIES, DELIVERY_ATTEMPTS


@pytest.fixture
def run(settings, monkeypatch):
    """`webhook-service ...` configured like the test app (WEBHOOK__<KEY> variables), so both share one
    database."""
    monkeypatch.delenv("WEBHOOK_SERVICE_CONFIG", raising=False)
    for key, value in settings.model_dump(mode="json", exclude_none=True).items():
        monkeypatch.setenv(f"WEBHOOK__{key.upper()}", json.dumps(value))

    def invoke(*arguments: str, input: str | None = None):
        return CliRunner().invoke(cli, list(arguments), input=input, catch_exceptions=False)

    return invoke


def fail_all_attempts(runtime, endpoint: dict) -> None:
    runtime.deliveries.drain(endpoint["id"])
    for _ in RETRY_SCHEDULE:
        time.sleep(RETRY_SCHEDULE[0] * 1.15)
        runtime.deliveries.drain(endpoint["id"])


def _one_failed_delivery(client, runtime, receiver, run) -> tuple[dict, dict]:
    """An endpoint whose one delivery has failed every attempt: the endpoint, and the delivery as listed."""
    endpoint = listen(client, receiver)
    receiver.answer("/hook", 500)
    post_standard(client, inbound_body("m-1"))
    fail_all_attempts(runtime, endpoint)
    [failed] = json.loads(run("deliveries", "list", "--json").output)
    return endpoint, failed


def test_list_retry_and_replay(client, runtime, receiver, run):
    endpoint, failed = _one_failed_delivery(client, runtime, receiver, run)
    assert (failed["status"], failed["attempts"], failed["lastHttpStatus"]) == ("failed", 4, 500)
    assert failed["endpointId"] == endpoint["id"] and failed["eventType"] == "message.received"
    assert "failed" in run("deliveries", "list").output
    assert json.loads(run("deliveries", "list", "--status", "delivered", "--json").output) == []
    [shown] = json.loads(run("deliveries", "endpoints", "--json").output)
    assert shown["id"] == endpoint["id"] and shown["failingSince"]

    receiver.answer("/hook", 204)
    time.sleep(RETRY_SCHEDULE[0] * 1.15)  # the pause the last failures began
    result = run("deliveries", "retry", "--all-failed")
    assert result.exit_code == 0 and "queued 1 of 1" in result.output
    assert runtime.deliveries.drain(endpoint["id"]) == {"delivered": 1}
    assert json.loads(run("deliveries", "list", "--json").output) == []
    # Named deliveries that cannot be retried are each named, with why, and the command fails.
    delivered = run("deliveries", "retry", str(failed["id"]), "99999")
    assert delivered.exit_code == 1 and delivered.stdout == "nothing to retry\n"
    assert f"{failed['id']}: delivered, not failed: nothing to retry" in delivered.stderr
    assert "99999: no such delivery" in delivered.stderr
    # Nothing failed is nothing to do, not a usage error; nothing named at all is one.
    nothing = run("deliveries", "retry", "--all-failed")
    assert (nothing.exit_code, nothing.output) == (0, "nothing to retry: no delivery is failed\n")
    assert run("deliveries", "retry").exit_code == 2

    result = run("deliveries", "replay", "--endpoint", endpoint["id"], "--since", "2020-01-01T00:00:00Z")
    assert result.exit_code == 0 and "replaying 1 event to" in result.output
    assert runtime.deliveries.drain(endpoint["id"]) == {"delivered": 1}
    result = run("deliveries", "replay", "--endpoint", endpoint["id"], str(failed["eventId"]))
    assert "replaying 1 event to" in result.output
    ids = [r.headers["webhook-id"] for r in receiver.requests()]
    assert len(set(ids)) == 1 and len(ids) == 6

    assert run("deliveries", "replay", "--endpoint", "nope", "1").exit_code == 1
    assert run("deliveries", "replay", "--endpoint", endpoint["id"]).exit_code == 2
    assert run("deliveries", "replay", "--endpoint", endpoint["id"], "--since", "yesterday").exit_code == 2
    assert client.get(f"/api/v1/endpoints/{endpoint['id']}", headers=A).get_json()["failingSince"] is None


def test_a_named_failed_delivery_of_a_disabled_endpoint_is_not_retried_and_says_why(client, runtime, receiver, run):
    endpoint, failed = _one_failed_delivery(client, runtime, receiver, run)
    assert client.patch(f"/api/v1/endpoints/{endpoint['id']}", json={"enabled": False}, headers=A).status_code == 200
    result = run("deliveries", "retry", str(failed["id"]))
    assert result.exit_code == 1 and f"{failed['id']}: its endpoint is disabled: enable it first" in result.stderr
    assert [row["status"] for row in json.loads(run("deliveries", "list", "--json").output)] == ["failed"]


def test_prune_removes_old_attempts_and_finished_deliveries_but_not_pending_ones(client, runtime, receiver, run):
    endpoint = listen(client, receiver)
    post_standard(client, inbound_body("m-1"))
    runtime.deliveries.drain(endpoint["id"])  # delivered
    receiver.answer("/hook", 500)
    post_standard(client, inbound_body("m-2"))
    runtime.deliveries.drain(endpoint["id"])  # pending, to be retried
    assert "deleted 0 delivery attempts and 0 finished deliveries" in run("prune").output
    long_ago = datetime.now(UTC) - timedelta(days=40)
    with runtime.db.writing() as conn:
        conn.execute(sa.update(DELIVERY_ATTEMPTS).values(attempted_at=long_ago))
        conn.execute(sa.update(DELIVERIES).values(completed_at=long_ago).where(DELIVERIES.c.status != "pending"))
    assert "would delete 2 delivery attempts and 1 finished delivery" in run("prune", "--dry-run").output
    # Asked to confirm a shorter period, the operator is shown the delivery history it would delete too.
    refused = run("prune", "--days", "5", input="n\n")
    assert refused.exit_code == 1 and "would delete 2 delivery attempts and 1 finished delivery" in refused.output
    assert "deleted 2 delivery attempts and 1 finished delivery" in run("prune").output
    with runtime.db.reading() as session:
        assert [row.status for row in session.execute(sa.select(DELIVERIES.c.status))] == ["pending"]
        assert session.execute(sa.select(DELIVERY_ATTEMPTS)).all() == []
