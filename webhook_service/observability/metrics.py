"""Prometheus metrics. Under gunicorn, and in the worker's consumer processes, each process writes its
values to files (`metrics_sharing.py` says where, and why it must be decided before prometheus_client is
imported); a scrape adds up the files of the directories it is given. A process alone (tests, a CLI
command) keeps them in memory and reports its own."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

WEBHOOKS = Counter("webhook_requests_total", "Webhook requests by provider and outcome", ["provider", "outcome"])
WEBHOOK_SECONDS = Histogram(
    "webhook_request_seconds",
    "Time to verify, store and answer a webhook",
    ["provider"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
# Per process: in the web process mostly webhooks, in the worker download outcomes and deliveries.
GROUP_COMMIT_UNITS = Histogram(
    "database_group_commit_units",
    "Units of work (a webhook, a download's outcome, a delivery's) committed together by one transaction",
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64),
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
ENQUEUE_FAILURES = Counter(
    "queue_enqueue_failures_total",
    "Attachments whose enqueue gave up (the queue did not answer); the sweep enqueues them later",
)
# Set by the sweep, once a minute, in one process: the most recent value is the truth, whichever
# process wrote it.
QUEUE_WAITING = Gauge(
    "queue_waiting_tasks",
    "Tasks waiting in the download queue when the sweep last looked",
    multiprocess_mode="mostrecent",
)
SWEEP_RUNS = Counter(
    "attachment_sweep_runs_total",
    "Runs of the minute's sweep by how they ended: done, time_budget, or deferred (the queue held a batch)",
    ["stopped"],
)
SWEEP_ENQUEUED = Counter(
    "attachment_sweep_enqueued_total", "Attachments the sweep enqueued again (their wake-up was lost or late)"
)
# The intake's spool on this host (every process of a data directory sees the same spool, so the value
# most recently read is the one shown).
SPOOL_DEPTH = Gauge(
    "webhook_spool_depth", "Webhooks spooled during a database outage, not yet stored", multiprocess_mode="mostrecent"
)
SPOOL_BYTES = Gauge("webhook_spool_bytes", "Size of the spool's files together", multiprocess_mode="mostrecent")
SPOOL_OLDEST_AGE = Gauge(
    "webhook_spool_oldest_age_seconds",
    "How long the oldest spooled webhook has waited since it arrived (0 when none waits)",
    multiprocess_mode="mostrecent",
)

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
    counter, histogram = _webhook_metrics(provider, outcome)
    counter.inc()
    histogram.observe(seconds)


@functools.lru_cache(maxsize=1024)  # providers and outcomes are few (the caller keeps unknown names out)
def _webhook_metrics(provider: str, outcome: str) -> tuple[Counter, Histogram]:
    """The labelled children, found once: `labels()` checked and looked up its values again on every
    webhook, 40% of the two updates' cost."""
    return WEBHOOKS.labels(provider, outcome), WEBHOOK_SECONDS.labels(provider)


def observe_group_commit(units: int) -> None:
    GROUP_COMMIT_UNITS.observe(units)


def observe_spool(depth: int, size: int, oldest_age_seconds: float) -> None:
    SPOOL_DEPTH.set(depth)
    SPOOL_BYTES.set(size)
    SPOOL_OLDEST_AGE.set(oldest_age_seconds)


def render(directories: Sequence[Path] = ()) -> tuple[bytes, str]:
    """The exposition of the values written under `directories`, or of this process's when none."""
    return generate_latest(_registry(directories)), CONTENT_TYPE_LATEST


def serve(port: int, host: str, directories: Sequence[Path]) -> None:
    """Serve GET /metrics on `port` from a daemon thread (the worker's scrape target)."""
    start_http_server(port, addr=host, registry=_registry(directories))


def _registry(directories: Sequence[Path]) -> CollectorRegistry:
    if not directories:
        return REGISTRY
    registry = CollectorRegistry()
    registry.register(_SharedFiles(directories))
    return registry


class _SharedFiles(Collector):
    """prometheus_client's multiprocess collector over several directories."""

    def __init__(self, directories: Sequence[Path]):
        self._directories = list(directories)

    def collect(self) -> Iterable[Metric]:
        for _ in range(2):
            try:
                return MultiProcessCollector.merge(self._files(), accumulate=True)
            except FileNotFoundError:
                pass  # a kind of process started and emptied its directory between the listing and the read
        return MultiProcessCollector.merge(self._files(), accumulate=True)

    def _files(self) -> list[str]:
        return [str(path) for directory in self._directories for path in sorted(directory.glob("*.db"))]
