"""`quarantine replay` of an entry kept without its body (too large, or past quarantine_max_bytes): there
is nothing to replay, and the command says so, exits 1 and changes nothing. And of a spooled request
quarantined because its connection moved to another tenant: not while it belongs to that tenant."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from tests.fixtures.app import TENANT_A, TENANT_B
from tests.support.spool import runtime_like, spooled_request
from tests.support.standard import inbound_body, post_standard
from webhook_service.database.tables import Message, QuarantinedRequest


@pytest.fixture
def settings_overrides():
    # A webhook cap a test can pass, and a quarantine budget smaller than one refused body.
    return {"webhook_max_body_bytes": 2000, "quarantine_max_bytes": 10}


def _entry(run) -> dict:
    [entry] = json.loads(run("quarantine", "list", "--json").output)
    return entry


def _nothing_changed(runtime, entry_id: int) -> None:
    with runtime.db.reading() as session:
        assert session.get(QuarantinedRequest, entry_id).resolution is None
        assert session.scalar(sa.select(sa.func.count()).select_from(Message)) == 0


@pytest.mark.parametrize("trust", [False, True], ids=["verified", "trusted"])
def test_a_request_too_large_to_keep_cannot_be_replayed(client, runtime, run, trust):
    assert post_standard(client, inbound_body("big", text="x" * 3000)).status_code == 413
    entry = _entry(run)
    assert (entry["reason"], entry["bytes"], entry["bodyKept"]) == ("body_too_large", 0, False)
    listed = run("quarantine", "list").output.rstrip()
    assert listed.endswith("(body not kept)") and listed.count("not kept") == 1, "said once"
    result = run("quarantine", "replay", str(entry["id"]), *(["--trust"] if trust else []))
    assert result.exit_code == 1
    assert (
        f"{entry['id']}: cannot be replayed, its body was not kept (body exceeds the 2000-byte limit" in result.stderr
    )
    assert result.stderr.rstrip().endswith("; nothing changed")
    assert result.stdout == "replayed 0 of 1\n"
    _nothing_changed(runtime, entry["id"])


def test_a_request_past_the_quarantine_budget_cannot_be_replayed(client, runtime, run):
    assert post_standard(client, b'{"type": "message.received", "data": ').status_code == 400
    entry = _entry(run)
    assert (entry["reason"], entry["bodyKept"]) == ("invalid_json", False)
    result = run("quarantine", "replay", "--trust", str(entry["id"]))
    assert result.exit_code == 1
    assert "cannot be replayed, its body was not kept (body of 37 bytes not kept: quarantine holds" in result.stderr
    _nothing_changed(runtime, entry["id"])


def test_a_body_that_came_empty_was_kept_and_is_replayed_as_such(client, runtime, run):
    assert post_standard(client, b"").status_code == 400
    entry = _entry(run)
    assert (entry["bytes"], entry["bodyKept"]) == (0, True)
    result = run("quarantine", "replay", "--trust", str(entry["id"]))
    assert result.exit_code == 1
    assert "not replayed (400" in result.stderr and "not kept" not in result.stderr


class TestTenantChanged:
    """A spooled request whose connection moved to another tenant before it was drained is quarantined
    as `tenant_changed`, under the tenant it arrived for. Replayed while the connection belongs to the
    other tenant, it would be stored as that tenant's message: replay refuses it, changing nothing, until
    the connection is back with the tenant it arrived for."""

    @pytest.fixture
    def settings_overrides(self):
        return {}

    def _connections(self, settings, tenant: str) -> list[dict]:
        return [
            {**connection, "tenant": tenant} if connection["name"] == "main" else connection
            for connection in settings.model_dump(mode="json")["connections"]
        ]

    def _quarantined_as_tenant_changed(self, runtime, settings, monkeypatch) -> int:
        moved = runtime_like(settings, connections=self._connections(settings, TENANT_B))
        try:
            assert moved.intake.store_spooled(spooled_request("m-moved")).reason_code == "tenant_changed"
        finally:
            moved.close()
        monkeypatch.setenv("WEBHOOK__CONNECTIONS", json.dumps(self._connections(settings, TENANT_B)))
        with runtime.db.reading() as session:
            return session.scalars(sa.select(QuarantinedRequest.id)).one()

    def test_it_is_not_replayed_while_the_connection_belongs_to_another_tenant(
        self, runtime, settings, run, monkeypatch
    ):
        entry_id = self._quarantined_as_tenant_changed(runtime, settings, monkeypatch)
        for trust in (["--trust"], []):
            result = run("quarantine", "replay", *trust, str(entry_id))
            assert result.exit_code == 1
            [line] = [line for line in result.stderr.splitlines() if line.startswith(f"{entry_id}:")]
            assert line == (
                f"{entry_id}: cannot be replayed, its connection standard/main now belongs to tenant {TENANT_B},"
                f" not to tenant {TENANT_A}, for which it arrived: give the connection back to tenant {TENANT_A}"
                " to replay it, or discard it; nothing changed"
            )
            assert result.stdout == "replayed 0 of 1\n"
        _nothing_changed(runtime, entry_id)

    def test_it_is_replayed_once_the_connection_is_back_with_its_tenant(self, runtime, settings, run, monkeypatch):
        entry_id = self._quarantined_as_tenant_changed(runtime, settings, monkeypatch)
        monkeypatch.setenv("WEBHOOK__CONNECTIONS", json.dumps(self._connections(settings, TENANT_A)))
        result = run("quarantine", "replay", "--trust", str(entry_id))
        assert result.exit_code == 0, result.stderr
        with runtime.db.reading() as session:
            assert session.get(QuarantinedRequest, entry_id).resolution == "replayed"
            [message] = session.scalars(sa.select(Message)).all()
        assert (message.provider_message_id, message.tenant_id) == ("m-moved", TENANT_A)
