"""`webhook-service consume` (internal: `worker` runs it): one consumer process of the download queue."""

from __future__ import annotations

import click

from webhook_service.cli.context import command_runtime
from webhook_service.worker.supervisor import stop_when_orphaned


@click.command(hidden=True)
@click.option("--threads", type=int, required=True, help="Concurrent downloads in this process.")
@click.option("--no-periodic", is_flag=True, help="Leave the minute's sweep to another process.")
@click.option("--supervised", is_flag=True, help="Started by a worker supervisor: stop when it is gone.")
def consume(threads: int, no_periodic: bool, supervised: bool) -> None:
    """One consumer process: downloads on `threads` threads until stopped."""
    runtime = command_runtime()
    if supervised:
        stop_when_orphaned()
    # Worker processes drain the spool of their data directory too (one process at a time drains it).
    runtime.start_spool_drainer()
    runtime.queue.consumer(threads, periodic=not no_periodic).run()
