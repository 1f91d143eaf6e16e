"""`webhook-service quarantine`: refused webhook requests, kept whole for review: list, show, replay,
discard. The same operations as the intake's own (`database/quarantine.py`, `Intake.replay`); replays and
discards are written to the audit log, as the console's are."""

from __future__ import annotations

import sys
from typing import Any

import click

from webhook_service.api.read_params import DEFAULT_PAGE, MAX_PAGE
from webhook_service.cli.context import cli_actor, command_runtime
from webhook_service.cli.output import echo_listing
from webhook_service.database.audit import Action, record_actions
from webhook_service.database.quarantine import (
    QuarantineFilter,
    body_was_kept,
    quarantine_entries,
    quarantine_entry,
    resolve_entry,
)


@click.group()
def quarantine() -> None:
    """Webhook requests refused with 401/400/413, kept whole for review."""


@quarantine.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include resolved entries.")
@click.option("--provider")
@click.option(
    "--limit", type=click.IntRange(1, MAX_PAGE), default=DEFAULT_PAGE, show_default=True, help="How many to list."
)
@click.option("--json", "as_json", is_flag=True)
def quarantine_list(show_all: bool, provider: str | None, limit: int, as_json: bool) -> None:
    """Refused requests with their reasons, newest first."""
    runtime = command_runtime()
    rows = quarantine_entries(
        runtime.db, where=QuarantineFilter(include_resolved=show_all, provider=provider), limit=limit
    )
    entries = [
        {
            "id": r.id,
            "requestId": r.request_id,
            "receivedAt": r.received_at.isoformat(),
            "provider": r.provider,
            "connection": r.connection,
            "status": r.http_status,
            "reason": r.reason_code,
            "detail": r.reason,
            "bytes": r.body_bytes,
            "bodyKept": body_was_kept(r),
            "resolution": r.resolution,
        }
        for r in rows
    ]
    echo_listing(entries, as_json=as_json, line=_entry_line, empty="quarantine is empty")


@quarantine.command("show")
@click.argument("entry_id", type=int)
def quarantine_show(entry_id: int) -> None:
    """Print one entry: reason, headers and the body exactly as received."""
    row = quarantine_entry(command_runtime().db, entry_id)
    if row is None:
        raise click.ClickException(f"no quarantined request {entry_id}")
    click.echo(f"{row.method} {row.url}\nreceived {row.received_at.isoformat()} from {row.remote_addr}")
    click.echo(f"request id {row.request_id}")
    click.echo(f"refused {row.http_status} {row.reason_code}: {row.reason}\n")
    for name, value in row.headers:
        click.echo(f"{name}: {value}")
    click.echo("")
    click.echo(row.body.decode("utf-8", "backslashreplace"))


@quarantine.command("replay")
@click.argument("entry_ids", type=int, nargs=-1, required=True)
@click.option(
    "--trust", is_flag=True, help="Skip verification: you vouch for these requests (e.g. refused under a wrong secret)."
)
def quarantine_replay(entry_ids: tuple[int, ...], trust: bool) -> None:
    """Run requests through the intake again. Signatures are re-checked against the current secrets
    and the original arrival time; stored credentials were redacted, so Basic-auth or token-only
    connections need --trust. An entry kept without its body (too large, cut off, or past
    quarantine_max_bytes), or whose connection now belongs to another tenant than the one it arrived
    for, cannot be replayed: it is reported and left as it is. Exits 1 unless every entry was replayed."""
    runtime = command_runtime()
    failures = 0
    done = []
    with click.progressbar(entry_ids, label="replaying", file=sys.stderr) as ids:
        for entry_id in ids:
            entry = quarantine_entry(runtime.db, entry_id)
            result = runtime.intake.replay(entry_id, trust=trust)
            if result is None:
                failures += 1
                outcome, detail = "not_found", "not found, or its connection no longer exists"
                click.echo(f"\n{entry_id}: {detail}", err=True)
            elif result.outcome in ("body_not_kept", "tenant_changed"):
                failures += 1
                outcome, detail = "refused", f"cannot be replayed, {result.detail}; nothing changed"
                click.echo(f"\n{entry_id}: {detail}", err=True)
            elif result.status != 200:
                failures += 1
                detail = f"not replayed ({result.status} {result.reason_code}: {result.detail})"
                click.echo(f"\n{entry_id}: {detail}", err=True)
                outcome = "failed"
            else:
                outcome, detail = "ok", "stored"
            tenant = entry.tenant_id if entry else None
            action = "replay_trusted" if trust else "replay"
            done.append(Action(cli_actor(), action, "quarantine", str(entry_id), tenant, outcome, detail))
    record_actions(runtime.db, done)
    click.echo(f"replayed {len(entry_ids) - failures} of {len(entry_ids)}")
    sys.exit(1 if failures else 0)


@quarantine.command("discard")
@click.argument("entry_ids", type=int, nargs=-1, required=True)
def quarantine_discard(entry_ids: tuple[int, ...]) -> None:
    """Mark entries as reviewed and not to be replayed (they stay until `prune`)."""
    runtime = command_runtime()
    done = []
    for entry_id in entry_ids:
        entry = quarantine_entry(runtime.db, entry_id)
        resolve_entry(runtime.db, entry_id, "discarded")
        tenant = entry.tenant_id if entry else None
        result = "ok" if entry else "not_found"
        done.append(Action(cli_actor(), "discard", "quarantine", str(entry_id), tenant, result, "discarded"))
    record_actions(runtime.db, done)
    click.echo(f"discarded {len(entry_ids)}")


def _entry_line(e: dict[str, Any]) -> str:
    resolution = f"  [{e['resolution']}]" if e["resolution"] else ""
    resolution += "" if e["bodyKept"] else "  (body not kept)"
    return (
        f"{e['id']:>8}  {e['receivedAt'][:19]}  {e['requestId']}  {e['provider']}/{e['connection']}  {e['status']}  "
        f"{e['reason']}: {e['detail']}{resolution}"
    )
