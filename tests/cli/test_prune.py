"""`webhook-service prune`: what it deletes (raw requests and resolved quarantine entries older than the
cutoff), what it keeps (unreviewed quarantine entries, messages), nonsense refused, a dry run, and a
question before deleting more than the configuration says."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from tests.support.standard import inbound_body, post_standard
from webhook_service.database.quarantine import resolve_entry
from webhook_service.database.tables import Message, QuarantinedRequest, RawRequest, RequestLogEntry


@pytest.fixture
def requests_of_all_ages(client, runtime):
    """Raw requests received 40, 10 and 0 days ago, and quarantine entries 40 days old: one discarded
    (resolved), one nobody has looked at. retention_days is 30."""
    ages = {"raw-40": 40, "raw-10": 10, "raw-0": 0}
    for name in ages:
        assert post_standard(client, inbound_body(name)).status_code == 200
    assert post_standard(client, b"{resolved").status_code == 400
    assert post_standard(client, b"{unresolved").status_code == 400
    with runtime.db.transaction() as session:
        raw = dict(session.execute(sa.select(Message.provider_message_id, Message.raw_request_id)).all())
        for name, days in ages.items():
            session.execute(sa.update(RawRequest).where(RawRequest.id == raw[name]).values(received_at=_ago(days)))
        session.execute(sa.update(QuarantinedRequest).values(received_at=_ago(40)))
        session.execute(sa.update(RequestLogEntry).values(received_at=_ago(40)))  # the five requests' rows
        resolved = session.scalars(
            sa.select(QuarantinedRequest.id).where(QuarantinedRequest.body == b"{resolved")
        ).one()
    resolve_entry(runtime.db, resolved, "discarded")


def _ago(days: int) -> datetime:
    return datetime.now(UTC) - timedelta(days=days, minutes=1)


def _left(runtime) -> tuple[int, int, int, int]:
    """Raw requests, resolved and unresolved quarantine entries, messages still there."""
    with runtime.db.reading() as session:
        count = sa.select(sa.func.count())
        return (
            session.scalar(count.select_from(RawRequest)),
            session.scalar(count.select_from(QuarantinedRequest).where(QuarantinedRequest.resolved_at.is_not(None))),
            session.scalar(count.select_from(QuarantinedRequest).where(QuarantinedRequest.resolved_at.is_(None))),
            session.scalar(count.select_from(Message)),
        )


@pytest.mark.parametrize("days", ["-1", "0", "-30", "many"])
def test_a_cutoff_that_is_not_in_the_past_is_refused(run, runtime, requests_of_all_ages, days):
    # --days -1 used to put the cutoff a day in the future (everything deleted); --days 0 meant 30.
    result = run("prune", "--days", days, "--yes")
    assert result.exit_code == 2
    assert "Invalid value for '--days'" in result.output
    assert _left(runtime) == (3, 1, 1, 3)


def test_by_default_it_deletes_what_the_retention_period_says_and_keeps_unreviewed_entries(
    run, runtime, requests_of_all_ages
):
    result = run("prune")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].startswith(
        "deleted 1 raw request, 5 request log entries and 1 resolved quarantined request received before "
    )
    assert lines[0].endswith(" UTC (30 days ago)")
    assert lines[1] == (
        "kept 1 unresolved quarantined request from before then: review them (quarantine list), "
        "or delete them too with --include-unresolved"
    )
    assert _left(runtime) == (2, 0, 1, 3)  # messages are never pruned
    # Run again (cron): nothing more to do, and it says so.
    assert run("prune").output.startswith(
        "deleted 0 raw requests, 0 request log entries and 0 resolved quarantined requests"
    )


def test_a_dry_run_counts_and_deletes_nothing(run, runtime, requests_of_all_ages):
    result = run("prune", "--dry-run", "--days", "5", "--include-unresolved")
    assert result.exit_code == 0
    assert result.output.startswith(
        "would delete 2 raw requests, 5 request log entries and 2 quarantined requests received before "
    )
    assert _left(runtime) == (3, 1, 1, 3)


def test_a_shorter_period_than_configured_is_confirmed_first(run, runtime, requests_of_all_ages):
    refused = run("prune", "--days", "5", input="n\n")
    assert refused.exit_code == 1
    assert "would delete 2 raw requests, 5 request log entries and 1 resolved quarantined request" in refused.output
    assert "--days 5 is shorter than retention_days (30)" in refused.output
    assert "nothing deleted: not confirmed (--yes deletes without asking)" in refused.output
    assert _left(runtime) == (3, 1, 1, 3)
    # No terminal to ask (cron, a pipe): the same refusal, not a deletion.
    assert run("prune", "--days", "5", input="").exit_code == 1
    assert _left(runtime) == (3, 1, 1, 3)

    confirmed = run("prune", "--days", "5", input="y\n")
    assert (
        confirmed.exit_code == 0
        and "deleted 2 raw requests, 5 request log entries and 1 resolved quarantined request" in confirmed.output
    )
    assert _left(runtime) == (1, 0, 1, 3)


def test_unreviewed_entries_go_only_when_asked_for_and_confirmed(run, runtime, requests_of_all_ages):
    assert run("prune", "--include-unresolved", input="n\n").exit_code == 1
    assert _left(runtime) == (3, 1, 1, 3)
    result = run("prune", "--include-unresolved", "--yes")
    assert result.exit_code == 0
    assert result.output.startswith(
        "deleted 1 raw request, 5 request log entries and 2 quarantined requests received before "
    )
    assert "kept" not in result.output
    assert _left(runtime) == (2, 0, 0, 3)
