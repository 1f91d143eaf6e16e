"""The overview (/console/): requests per provider, connection and outcome over the last hour and day
(charts and a table), attachments per state with the commonest reasons for failures, what waits in
quarantine and in the download queue, and the service's health."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from flask import Blueprint
from werkzeug.wrappers import Response

from webhook_service.console import charts
from webhook_service.console.context import Console
from webhook_service.console.rendering import age, page
from webhook_service.database.quarantine import QuarantineFilter, count_quarantined
from webhook_service.database.request_log import OUTCOMES, OutcomeCount, outcome_counts
from webhook_service.media.attachments import attachment_totals
from webhook_service.observability.health import run_probes
from webhook_service.observability.logs import log

logger = logging.getLogger("webhook_service.console")

HOUR_BUCKET = 5 * 60
DAY_BUCKET = 60 * 60


def register(blueprint: Blueprint, console: Console) -> None:
    parts = console.parts

    @blueprint.get("/")
    def overview() -> Response:
        tenants = console.operator().tenants
        now = int(time.time())
        day_start = (now // DAY_BUCKET - 23) * DAY_BUCKET
        hour_start = (now // HOUR_BUCKET - 11) * HOUR_BUCKET
        day_counts = outcome_counts(
            parts.db, tenants=tenants, since=datetime.fromtimestamp(day_start, UTC), bucket_seconds=HOUR_BUCKET
        )
        # The day's counts in 5-minute buckets give the hour's chart too (one query for both).
        hour_counts = [count for count in day_counts if count.bucket >= hour_start]
        day_chart = charts.requests_over_time(
            _rebucket(day_counts, DAY_BUCKET), start=day_start, bucket_seconds=DAY_BUCKET, buckets=24, label_every=3
        )
        hour_chart = charts.requests_over_time(
            hour_counts, start=hour_start, bucket_seconds=HOUR_BUCKET, buckets=12, label_every=2
        )
        rows = _per_connection(day_counts, hour_start)
        totals = attachment_totals(parts.db, tenants=tenants, since=datetime.now(UTC) - timedelta(days=1))
        return page(
            "overview.html",
            hour_chart=hour_chart,
            day_chart=day_chart,
            rows=rows,
            outcomes=OUTCOMES,
            attachments=totals,
            oldest_pending_age=age(totals.oldest_pending_at),
            quarantined=count_quarantined(parts.db, tenants=tenants, where=QuarantineFilter()),
            queue_waiting=_queue_waiting(console),
            health=run_probes(parts.probes),
        )


def _rebucket(counts: list[OutcomeCount], bucket_seconds: int) -> list[OutcomeCount]:
    return [
        OutcomeCount(c.bucket - c.bucket % bucket_seconds, c.provider, c.connection, c.outcome, c.count) for c in counts
    ]


def _per_connection(counts: list[OutcomeCount], hour_start: int) -> list[dict]:
    """One row per provider and connection: its outcomes over the hour and over the day."""
    rows: dict[tuple[str, str | None], dict] = {}
    for count in counts:
        row = rows.setdefault(
            (count.provider, count.connection),
            {
                "provider": count.provider,
                "connection": count.connection,
                "hour": defaultdict(int),
                "day": defaultdict(int),
            },
        )
        row["day"][count.outcome] += count.count
        if count.bucket >= hour_start:
            row["hour"][count.outcome] += count.count
    result = sorted(rows.values(), key=lambda row: -sum(row["day"].values()))
    for row in result:
        row["hour_bar"] = charts.share_bar(row["hour"])
        row["day_bar"] = charts.share_bar(row["day"])
    return result


def _queue_waiting(console: Console) -> int | None:
    try:
        return console.parts.queue_waiting()
    except Exception as error:  # noqa: BLE001  # the page shows the queue as unavailable rather than failing
        log(logger, "console_queue_unavailable", logging.WARNING, error=type(error).__name__)
        return None
