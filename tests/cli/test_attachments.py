"""`webhook-service attachments`: the listing says what each attachment is (no `None: None`), and a retry
says exactly what it did: ids that do not exist or are not failed are named and make it exit 1, and
nothing failed is not a usage error."""

from __future__ import annotations

import json
import uuid

import pytest
import sqlalchemy as sa

from tests.support.standard import inbound_body, post_standard
from webhook_service.database.tables import Attachment

STATES = {
    "stored": {"status": "stored", "content_type": "image/png", "size": 1234, "sha256": "0" * 64},
    "failed": {"status": "failed", "reason_code": "timeout", "reason": "no answer within 30 s", "attempts": 8},
    "rejected": {"status": "rejected", "reason_code": "type_not_allowed", "reason": "image/svg+xml is not allowed"},
    "pending": {"status": "pending"},
}


@pytest.fixture
def attachments(client, runtime) -> dict[str, str]:
    """One attachment in each state, by state."""
    media = [{"url": f"https://media.example.com/{state}.png"} for state in STATES]
    assert post_standard(client, inbound_body("att-1", attachments=media)).status_code == 200
    with runtime.db.transaction() as session:
        ids = list(session.scalars(sa.select(Attachment.id).order_by(Attachment.index)))
        for attachment_id, values in zip(ids, STATES.values(), strict=True):
            session.execute(sa.update(Attachment).where(Attachment.id == attachment_id).values(**values))
    return dict(zip(STATES, ids, strict=True))


def _status(runtime, attachment_id: str) -> str:
    with runtime.db.reading() as session:
        return session.scalars(sa.select(Attachment.status).where(Attachment.id == attachment_id)).one()


def test_a_listing_of_stored_attachments_shows_their_type_and_size(run, attachments):
    result = run("attachments", "list", "--status", "stored")
    assert result.exit_code == 0
    [line] = result.output.splitlines()
    assert line.startswith(attachments["stored"]) and line.endswith("image/png, 1234 bytes")
    assert "None" not in line
    [row] = json.loads(run("attachments", "list", "--status", "stored", "--json").output)
    assert (row["contentType"], row["size"], row["reasonCode"]) == ("image/png", 1234, None)

    pending = run("attachments", "list", "--status", "pending").output
    assert pending.rstrip().endswith("attempts=0") and "None" not in pending
    problems = run("attachments", "list").output.splitlines()
    assert sorted(line.split()[1] for line in problems) == ["failed", "rejected"]
    assert any(line.endswith("timeout: no answer within 30 s") for line in problems)


def test_retrying_an_unknown_attachment_says_so_and_fails(run, runtime, attachments):
    unknown = str(uuid.uuid4())
    result = run("attachments", "retry", unknown)
    assert result.exit_code == 1
    assert f"{unknown}: no such attachment" in result.stderr
    assert result.stdout == "nothing to retry\n"


def test_retrying_an_attachment_that_is_not_failed_says_so_and_changes_nothing(run, runtime, attachments):
    result = run("attachments", "retry", attachments["stored"], attachments["pending"])
    assert result.exit_code == 1
    assert f"{attachments['stored']}: stored, not failed or rejected: nothing to retry" in result.stderr
    assert f"{attachments['pending']}: pending, not failed or rejected: nothing to retry" in result.stderr
    assert _status(runtime, attachments["stored"]) == "stored"


def test_the_retryable_ones_of_a_mixed_list_are_queued_and_the_rest_named(run, runtime, attachments):
    unknown = str(uuid.uuid4())
    result = run("attachments", "retry", attachments["failed"], unknown, attachments["rejected"], attachments["failed"])
    assert result.exit_code == 1
    assert "retrying 2 attachments" in result.stderr
    assert result.stdout == "queued 2 of 2 attachments for another attempt\n"
    assert f"{unknown}: no such attachment" in result.stderr
    assert _status(runtime, attachments["failed"]) == _status(runtime, attachments["rejected"]) == "pending"


def test_one_attachment_is_one_attachment(run, runtime, attachments):
    result = run("attachments", "retry", attachments["failed"])
    assert result.exit_code == 0
    assert "retrying 1 attachment" in result.stderr and "1 attachments" not in result.output
    assert result.stdout == "queued 1 of 1 attachment for another attempt\n"


def test_all_failed_with_nothing_failed_is_nothing_to_do_not_a_usage_error(run, runtime, attachments):
    assert run("attachments", "retry", "--all-failed").exit_code == 0  # the one failed attachment
    result = run("attachments", "retry", "--all-failed")
    assert result.exit_code == 0
    assert result.output == "nothing to retry: no attachment is failed\n"
    by_reason = run("attachments", "retry", "--all-failed", "--reason", "http_error")
    assert by_reason.exit_code == 0
    assert by_reason.output == "nothing to retry: no attachment is failed or rejected with reason http_error\n"


def test_a_retry_without_a_selection_is_a_usage_error(run, attachments):
    assert run("attachments", "retry").exit_code == 2
    assert run("attachments", "retry", attachments["failed"], "--reason", "timeout").exit_code == 2
