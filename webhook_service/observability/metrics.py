"""Prometheus metrics. Under gunicorn several processes serve requests, so when
PROMETHEUS_MULTIPROC_DIR is set (the run command sets it under the data directory) values are shared
through files there and /metrics aggregates them."""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

WEBHOOKS = Counter("webhook_requests_total", "Webhook requests by provider and outcome", ["provider", "outcome"])
WEBHOOK_SECONDS = Histogram(
    "webhook_request_seconds",
    "Time to verify, store and answer a webhook",
    ["provider"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
ATTACHMENTS = Counter(
    "attachment_outcomes_total", "Attachment downloads by final or retry outcome", ["outcome", "reason"]
)
ATTACHMENT_SECONDS = Histogram(
    "attachment_processing_seconds",
    "Time to fetch, check and store one attachment",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
UPLOADS = Counter("media_uploads_total", "Media API uploads by outcome", ["outcome"])
# The intake's spool on this host (every process of a data directory sees the same spool, so the value
# most recently read is the one shown).
SPOOL_DEPTH = Gauge(
    "webhook_spool_depth", "Webhooks spooled during a database outage, not yet stored", multiprocess_mode="mostrecent"
)
SPOOL_BYTES = Gauge("webhook_spool_bytes", "Size of the spool file", multiprocess_mode="mostrecent")
SPOOL_OLDEST_AGE = Gauge(
    "webhook_spool_oldest_age_seconds",
    "How long the oldest spooled webhook has waited since it arrived (0 when none waits)",
    multiprocess_mode="mostrecent",
)


def observe_webhook(provider: str, outcome: str, seconds: float) -> None:
    WEBHOOKS.labels(provider, outcome).inc()
    WEBHOOK_SECONDS.labels(provider).observe(seconds)


def observe_spool(depth: int, size: int, oldest_age_seconds: float) -> None:
    SPOOL_DEPTH.set(depth)
    SPOOL_BYTES.set(size)
    SPOOL_OLDEST_AGE.set(oldest_age_seconds)


def render() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
