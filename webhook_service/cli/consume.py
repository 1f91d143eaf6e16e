"""`webhook-service consume` (internal: `worker` runs it): one consumer process of the queue."""

from __future__ import annotations

import click

from webhook_service.cli.context import command_runtime
from webhook_service.worker.feed_watch import FeedWatcher
from webhook_service.worker.supervisor import stop_when_orphaned


@click.command(hidden=True)
@click.option("--threads", type=int, required=True, help="Concurrent downloads and deliveries in this process.")
@click.option("--no-periodic", is_flag=True, help="Leave the minute's sweeps and the feed watch to another process.")
@click.option("--supervised", is_flag=True, help="Started by a worker supervisor: stop when it is gone.")
def consume(threads: int, no_periodic: bool, supervised: bool) -> None:
    """One consumer process: downloads and deliveries on `threads` threads until stopped."""
    runtime = command_runtime()
    if supervised:
        stop_when_orphaned()
    if not no_periodic:
        FeedWatcher(
            runtime.deliveries.wake_for_new_events,
            runtime.catch_up_deliveries,
            runtime.settings.delivery.poll_interval_seconds,
        ).start()
    runtime.queue.consumer(threads, periodic=not no_periodic).run()
