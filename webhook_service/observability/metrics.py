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

# Push delivery (delivery/engine.py).
DELIVERY_ATTEMPTS = Counter(
    "delivery_attempts_total",
    "Delivery attempts by outcome (delivered, retry, failed, disabled) and reason (an error code or http_5xx...)",
    ["outcome", "reason"],
)
DELIVERY_SECONDS = Histogram(
    "delivery_attempt_seconds",
    "Time from sending a delivery to the receiver's answer (or the failure)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
# Set by the worker at the end of each turn and by the minute's sweep; across processes the latest wins.
DELIVERY_BACKLOG_AGE = Gauge(
    "delivery_backlog_age_seconds",
    "Age of the oldest event not yet delivered to the endpoint (0 when none is waiting)",
    ["endpoint"],
    multiprocess_mode="mostrecent",
)


def observe_webhook(provider: str, outcome: str, seconds: float) -> None:
    WEBHOOKS.labels(provider, outcome).inc()
    WEBHOOK_SECONDS.labels(provider).observe(seconds)


def render() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
