"""The operator commands, run through click against the same database the test app writes to."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from tests.fixtures.app import STANDARD_SECRET, TENANT_A
from tests.media import samples
from tests.support.standard import inbound_body, post_standard, standard_headers
from webhook_service.cli.main import cli
from webhook_service.database.tables import (
    Attachment,
    AuditEntry,
    Message,
    QuarantinedRequest,
    RawRequest,
    RequestLogEntry,
)


class TestQuarantine:
    def test_list_show_replay_and_discard(self, client, runtime, run):
        body = inbound_body("q-1", text="refused at first")
        # Signed with a secret the connection did not have yet: refused and quarantined.
        rotated = "whsec_" + "bmV3IHNlY3JldCBmb3IgdGhlIGNsaSB0ZXN0IQ=="
        headers = standard_headers(body, secret=rotated)
        assert (
            client.post(
                "/webhooks/standard/main", data=body, headers=headers, content_type="application/json"
            ).status_code
            == 401
        )
        post_standard(client, b"{not json")

        listed = run("quarantine", "list", "--json")
        assert listed.exit_code == 0
        entries = json.loads(listed.output)
        assert sorted(e["status"] for e in entries) == [400, 401]
        refused = next(e for e in entries if e["status"] == 401)
        assert refused["reason"] == "invalid_signature"

        shown = run("quarantine", "show", str(refused["id"]))
        assert "refused at first" in shown.output and "invalid_signature" in shown.output

        # Still refused with the current secrets (the signature is re-checked at replay)...
        assert run("quarantine", "replay", str(refused["id"])).exit_code == 1
        with runtime.db.reading() as session:
            assert session.scalar(sa.select(sa.func.count()).select_from(Message)) == 0
        # ...until the operator vouches for it.
        replayed = run("quarantine", "replay", "--trust", str(refused["id"]))
        assert replayed.exit_code == 0 and "replayed 1 of 1" in replayed.output
        with runtime.db.reading() as session:
            assert session.scalars(sa.select(Message.text)).one() == "refused at first"

        other = next(e for e in entries if e["status"] == 400)
        assert run("quarantine", "discard", str(other["id"])).exit_code == 0
        remaining = json.loads(run("quarantine", "list", "--json").output)
        assert remaining == []
        everything = json.loads(run("quarantine", "list", "--all", "--json").output)
        assert sorted(e["resolution"] for e in everything) == ["discarded", "replayed"]
        assert all(len(e["requestId"]) == 32 for e in everything)
        # Every action is in the audit log, as the console's are.
        with runtime.db.reading() as session:
            audited = session.scalars(sa.select(AuditEntry).order_by(AuditEntry.id)).all()
        assert [(a.action, a.target_id, a.result) for a in audited] == [
            ("replay", str(refused["id"]), "failed"),
            ("replay_trusted", str(refused["id"]), "ok"),
            ("discard", str(other["id"]), "ok"),
        ]
        assert all(a.actor.startswith("cli") and a.tenant_id == TENANT_A for a in audited)

    def test_replay_re_verifies_at_the_original_arrival_time(self, client, runtime, run, settings):
        # Refused because the connection was down in config... here: a signature from the future
        # relative to arrival is refused; replaying re-checks it against the same arrival time.
        import time

        body = inbound_body("q-2")
        headers = standard_headers(body, secret=STANDARD_SECRET, timestamp=int(time.time()) + 3600)
        client.post("/webhooks/standard/main", data=body, headers=headers, content_type="application/json")
        entry = json.loads(run("quarantine", "list", "--json").output)[0]
        result = run("quarantine", "replay", str(entry["id"]))
        assert result.exit_code == 1 and "stale_timestamp" in result.output


class TestAttachments:
    @pytest.fixture
    def settings_overrides(self):
        # The media server by address: the CLI resolves names with the system resolver.
        return {
            "queue": {"immediate": True},
            "media": {"fetch": {"allow_http": True, "allow_private_networks": ["127.0.0.1/32"], "total_timeout": 2}},
        }

    def test_list_and_retry_with_a_progress_bar(self, client, runtime, run, media_server):
        url = media_server.fail("/later.png", 403, times=1, then=samples.png()).replace("media.test", "127.0.0.1")
        post_standard(client, inbound_body("a-1", attachments=[{"url": url}]))
        listed = json.loads(run("attachments", "list", "--json").output)
        assert [(a["status"], a["reasonCode"]) for a in listed] == [("rejected", "http_error")]
        result = run("attachments", "retry", "--all-failed", "--reason", "http_error")
        assert result.exit_code == 0 and "queued 1 of 1" in result.output
        with runtime.db.reading() as session:
            assert session.scalars(sa.select(Attachment.status)).one() == "stored"
            assert session.scalars(sa.select(AuditEntry.action)).all() == ["retry"]
        assert run("attachments", "retry").exit_code == 2  # nothing named


class TestKeysAndHousekeeping:
    def test_check_config_names_connections_without_secrets(self, run):
        output = run("check-config").output
        assert "/webhooks/standard/main" in output and "UNSIGNED (development)" in output
        assert "whsec_" not in output
        assert "API users: 2, API keys: 2, console operators: 0" in output

    def test_prune_removes_old_raw_and_quarantined_requests(self, client, runtime, run):
        post_standard(client, inbound_body("p-1"))
        post_standard(client, b"{bad")
        assert (
            "deleted 0 raw requests, 0 request log entries and 0 resolved quarantined requests" in run("prune").output
        )
        with runtime.db.transaction() as session:
            for model in (RawRequest, QuarantinedRequest, RequestLogEntry):
                session.execute(
                    sa.update(model).values(received_at=sa.func.now() - sa.text("interval '40 days'"))
                    if runtime.db.dialect == "postgresql"
                    else sa.update(model).values(received_at=sa.text("datetime('now', '-40 days')"))
                )
        pruned = run("prune").output
        assert "deleted 1 raw request, 2 request log entries and 0 resolved quarantined requests" in pruned
        assert "kept 1 unresolved quarantined request" in pruned
        with runtime.db.reading() as session:
            assert session.scalar(sa.select(sa.func.count()).select_from(Message)) == 1


LISTINGS = [("quarantine", "list"), ("attachments", "list"), ("deliveries", "list")]


class TestListings:
    @pytest.mark.parametrize("listing", LISTINGS, ids=[group for group, _ in LISTINGS])
    @pytest.mark.parametrize("limit", ["0", "-5", "201"])
    def test_limit_is_from_1_to_the_read_apis_largest_page(self, listing, limit):
        result = CliRunner().invoke(cli, [*listing, "--limit", limit])
        assert result.exit_code == 2
        assert f"Invalid value for '--limit': {limit} is not in the range 1<=x<=200." in result.stderr

    @pytest.mark.parametrize("listing", LISTINGS, ids=[group for group, _ in LISTINGS])
    def test_the_largest_limit_lists(self, run, listing):
        assert run(*listing, "--limit", "200").exit_code == 0

    @pytest.mark.parametrize("group", [group for group, _ in LISTINGS])
    def test_list_says_what_it_lists(self, group):
        listed = CliRunner().invoke(cli, [group, "--help"]).output
        line = next(line for line in listed.splitlines() if line.strip().startswith("list "))
        assert len(line.split()) > 2 and "..." not in line  # a description, whole
