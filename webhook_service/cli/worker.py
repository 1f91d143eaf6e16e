"""`webhook-service worker`: the attachment workers. With more than one process it only supervises its
consumer processes (and so loads nothing of the web app); with one, it is the consumer (`consume`)."""

from __future__ import annotations

import sys

import click

from webhook_service.cli.failures import ConfigurationFailure, DirectoryUnusable
from webhook_service.observability.logs import configure_logging
from webhook_service.observability.metrics_sharing import WORKER, share_metrics, start_fresh
from webhook_service.settings import load_settings
from webhook_service.worker.supervisor import WorkerProcesses, split_threads


@click.command()
@click.option("--threads", type=int, help="Concurrent downloads in all (default: settings.queue.worker_threads).")
@click.option(
    "--processes",
    type=int,
    help="Processes to spread them over (default: settings.queue.worker_processes, or one per CPU).",
)
@click.option(
    "--no-periodic",
    is_flag=True,
    hidden=True,
    help="Leave the minute's sweep to another process (the supervisor passes it to all but one).",
)
@click.option("--supervised", is_flag=True, hidden=True, help="Started by a worker supervisor: stop when it is gone.")
@click.pass_context
def worker(
    context: click.Context, threads: int | None, processes: int | None, no_periodic: bool, supervised: bool
) -> None:
    """The queue consumer: downloads, checks and stores attachments; sweeps pending ones every minute."""
    if (threads is not None and threads < 1) or (processes is not None and processes < 1):
        raise click.UsageError("--threads and --processes must be at least 1")
    settings = load_settings()
    # The consumers' metrics go to files the web's /metrics (or, with worker_metrics_port, the first
    # consumer's) adds up; decided before anything imports prometheus_client (`consume` does).
    metrics_directory = share_metrics(settings.data_dir, WORKER)
    if not supervised:
        start_fresh(metrics_directory)
    shares = split_threads(threads or settings.queue.worker_threads, processes or settings.queue.worker_processes)
    if len(shares) > 1:
        configure_logging(settings.log_level)
        final = (ConfigurationFailure.exit_code, DirectoryUnusable.exit_code)
        sys.exit(WorkerProcesses(shares, final_exit_codes=final).run())
    group = context.find_root().command
    assert isinstance(group, click.Group)
    consume = group.get_command(context, "consume")
    assert consume is not None
    context.invoke(consume, threads=shares[0], no_periodic=no_periodic, supervised=supervised)
