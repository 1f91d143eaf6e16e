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


def observe_webhook(provider: str, outcome: str, seconds: float) -> None:
    WEBHOOKS.labels(provider, outcome).inc()
    WEBHOOK_SECONDS.labels(provider).observe(seconds)


def render() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
