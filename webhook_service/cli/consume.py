"""`webhook-service consume` (internal: `worker` runs it): one consumer process of the queue."""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path

import click

from webhook_service.cli.context import service_runtime
from webhook_service.observability import metrics
from webhook_service.observability.logs import log
from webhook_service.observability.metrics_sharing import MULTIPROCESS_VARIABLE
from webhook_service.worker.feed_watch import FeedWatcher
from webhook_service.worker.supervisor import stop_when_orphaned

logger = logging.getLogger("webhook_service.worker")


@click.command(hidden=True)
@click.option("--threads", type=int, required=True, help="Concurrent downloads and deliveries in this process.")
@click.option("--no-periodic", is_flag=True, help="Leave the minute's sweeps and the feed watch to another process.")
@click.option("--supervised", is_flag=True, help="Started by a worker supervisor: stop when it is gone.")
def consume(threads: int, no_periodic: bool, supervised: bool) -> None:
    """One consumer process: downloads and deliveries on `threads` threads until stopped."""
    runtime = service_runtime()
    # huey starts its process over (SIGHUP: a graceful stop, then exec of `python *sys.argv`) with what
    # started it; as `python -m webhook_service.cli` that would be the module's file run as a script.
    sys.argv = ["-m", "webhook_service.cli", *sys.argv[1:]]
    if runtime.settings.delivery.books_process:
        # Forked now, while this process has no other thread (delivery/books_process.py); if it dies,
        # this process starts over to fork another.
        runtime.deliveries.start_books_process(on_lost=_start_over)
    if supervised:
        stop_when_orphaned()
    port = runtime.settings.worker_metrics_port
    if port and not no_periodic:
        # One scrape target for all the worker's processes (their shared directory, set up by `worker`):
        # the one that runs the sweep serves it.
        shared = os.environ.get(MULTIPROCESS_VARIABLE)
        metrics.serve(port, runtime.settings.host, [Path(shared)] if shared else [])
    # Worker processes drain the spool of their data directory too (one process at a time drains it).
    runtime.start_spool_drainer()
    if not no_periodic:
        # New feed events reach push delivery within a poll interval (one watch per host is enough).
        FeedWatcher(
            runtime.deliveries.wake_for_new_events,
            runtime.catch_up_deliveries,
            runtime.settings.delivery.poll_interval_seconds,
        ).start()
    # Stopped (or starting over), it lets go of its books process, connections and files first.
    runtime.queue.consumer(threads, periodic=not no_periodic, after_stop=runtime.close).run()


def _start_over() -> None:
    """What SIGHUP asks of the consumer: finish what is running, then start this process again."""
    log(logger, "worker_process_starting_over", logging.WARNING, reason="delivery_books_process_lost")
    os.kill(os.getpid(), signal.SIGHUP)
