"""`webhook-service deliveries`: push delivery for operators. List deliveries (failed ones by default)
and endpoints with their health, retry failed deliveries with a fresh retry budget, replay events to an
endpoint. The same operations as the endpoints API's (delivery/history.py, delivery/endpoints.py)."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Any

import click

from webhook_service.api.read_params import DEFAULT_PAGE, MAX_PAGE
from webhook_service.cli.context import command_runtime
from webhook_service.cli.output import echo_listing, plural
from webhook_service.database.tables import DELIVERY_STATES
from webhook_service.delivery import history
from webhook_service.delivery.endpoints import EndpointNotFound
from webhook_service.providers.fields import parse_time

_RETRY_BATCH = 200


@click.group()
def deliveries() -> None:
    """Push delivery to consumers' endpoints: list, retry, replay."""


@deliveries.command("list")
@click.option("--status", type=click.Choice(DELIVERY_STATES), multiple=True, help="Default: failed.")
@click.option("--endpoint", "endpoint_id", help="Only this endpoint's deliveries.")
@click.option("--tenant", "tenant_id", help="Only this tenant's deliveries.")
@click.option(
    "--limit", type=click.IntRange(1, MAX_PAGE), default=DEFAULT_PAGE, show_default=True, help="How many to list."
)
@click.option("--json", "as_json", is_flag=True)
def deliveries_list(
    status: tuple[str, ...], endpoint_id: str | None, tenant_id: str | None, limit: int, as_json: bool
) -> None:
    """Deliveries, newest event first."""
    runtime = command_runtime()
    where = history.DeliveryFilter(endpoint_id=endpoint_id, tenant_id=tenant_id, statuses=status or ("failed",))
    rows = [
        {
            "id": row.id,
            "endpointId": row.endpoint_id,
            "tenantId": row.tenant_id,
            "eventId": row.event_id,
            "eventType": row.event_type,
            "status": row.status,
            "attempts": row.attempts,
            "lastHttpStatus": row.last_http_status,
            "lastError": row.last_error,
            "nextAttemptAt": row.next_attempt_at.isoformat() if row.next_attempt_at else None,
            "eventCreatedAt": row.event_created_at.isoformat(),
        }
        for row in history.list_deliveries(runtime.db, where, limit)
    ]
    echo_listing(rows, as_json=as_json, line=_delivery_line, empty="nothing to show")


@deliveries.command("endpoints")
@click.option("--tenant", "tenant_id", help="Only this tenant's endpoints.")
@click.option("--json", "as_json", is_flag=True)
def deliveries_endpoints(tenant_id: str | None, as_json: bool) -> None:
    """Endpoints with their health (failing since, disabled and why)."""
    runtime = command_runtime()
    tenants = [tenant_id] if tenant_id else [tenant.id for tenant in runtime.settings.tenants]
    rows = [{**endpoint, "tenantId": tenant} for tenant in tenants for endpoint in runtime.endpoints.for_tenant(tenant)]
    echo_listing(rows, as_json=as_json, line=_endpoint_line, empty="no endpoints")


@deliveries.command("retry")
@click.argument("delivery_ids", type=int, nargs=-1)
@click.option("--all-failed", is_flag=True, help="Every failed delivery (of --endpoint, if given).")
@click.option("--endpoint", "endpoint_id", help="With --all-failed: only this endpoint's.")
def deliveries_retry(delivery_ids: tuple[int, ...], all_failed: bool, endpoint_id: str | None) -> None:
    """Put failed deliveries back to pending with a fresh retry budget (enabled endpoints only). Exits 1
    when a named delivery does not exist, is not failed, or its endpoint is disabled."""
    if not delivery_ids and not all_failed:
        raise click.UsageError("name delivery ids, or use --all-failed")
    runtime = command_runtime()
    named = list(dict.fromkeys(delivery_ids))
    refused = history.not_retryable(runtime.db, named) if named else {}
    for delivery_id, why in refused.items():
        click.echo(f"{delivery_id}: {why}", err=True)
    ids = [delivery_id for delivery_id in named if delivery_id not in refused]
    if all_failed:
        chosen = set(ids)
        ids += [delivery_id for delivery_id in history.failed_ids(runtime.db, endpoint_id) if delivery_id not in chosen]
    if not ids:
        click.echo("nothing to retry" + (": no delivery is failed" if all_failed else ""))
        sys.exit(1 if refused else 0)
    reset: list[str] = []
    batches = [ids[start : start + _RETRY_BATCH] for start in range(0, len(ids), _RETRY_BATCH)]
    label = f"retrying {plural(len(ids), 'delivery', 'deliveries')}"
    with click.progressbar(batches, label=label, file=sys.stderr) as progress:
        for batch in progress:
            reset += history.retry_failed(runtime.db, batch)
    runtime.endpoints.wake(sorted(set(reset)))
    click.echo(
        f"queued {len(reset)} of {plural(len(ids), 'delivery', 'deliveries')} for another attempt"
        + ("" if len(reset) == len(ids) else " (the others are no longer failed, or their endpoint is disabled)")
    )
    sys.exit(1 if refused else 0)


@deliveries.command("replay")
@click.argument("event_ids", type=int, nargs=-1)
@click.option("--endpoint", "endpoint_id", required=True, help="The endpoint to deliver to again.")
@click.option("--since", help="Every event at or after this time (ISO 8601), instead of EVENT_IDS.")
def deliveries_replay(event_ids: tuple[int, ...], endpoint_id: str, since: str | None) -> None:
    """Deliver events to an endpoint again, with the webhook-id they had."""
    if bool(since) == bool(event_ids):
        raise click.UsageError("give --since or event ids, not both")
    moment: datetime | None = parse_time(since) if since else None
    if since and moment is None:
        raise click.BadParameter(f"{since!r} is not an ISO 8601 time", param_hint="--since")
    runtime = command_runtime()
    try:
        tenant_id = runtime.endpoints.tenant_of(endpoint_id)
        count = runtime.endpoints.replay(tenant_id, endpoint_id, since=moment, event_ids=list(event_ids))
    except EndpointNotFound:
        raise click.ClickException(f"no endpoint {endpoint_id}") from None
    click.echo(f"replaying {plural(count, 'event')} to {endpoint_id}")


def _delivery_line(row: dict[str, Any]) -> str:
    last = row["lastHttpStatus"] or row["lastError"] or "-"
    return (
        f"{row['id']}  {row['status']:<9}  event {row['eventId']} {row['eventType']:<19} "
        f"endpoint {row['endpointId']}  attempts={row['attempts']}  last={last}"
    )


def _endpoint_line(row: dict[str, Any]) -> str:
    state = "enabled" if row["enabled"] else f"DISABLED ({row['disabledReason']})"
    failing = f"  failing since {row['failingSince']}" if row["failingSince"] else ""
    return f"{row['id']}  {row['tenantId']}  {row['url']}  {state}{failing}"
