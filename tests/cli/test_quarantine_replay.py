"""`quarantine replay` of an entry kept without its body (too large, or past quarantine_max_bytes): there
is nothing to replay, and the command says so, exits 1 and changes nothing."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

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
