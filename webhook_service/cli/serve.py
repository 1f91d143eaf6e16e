"""Running the service: `run` (migrate, then web and worker together) and `migrate`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import click

from webhook_service.cli.output import plural
from webhook_service.cli.web import GUNICORN_COMMAND
from webhook_service.database.migrate import UnknownRevision, migrate
from webhook_service.settings import load_settings
from webhook_service.worker.supervisor import split_threads


@click.command()
@click.option("--host", help="Interface to listen on (default: settings.host, 127.0.0.1).")
@click.option("--port", type=int, help="Port to listen on (default: settings.port, 8000).")
def run(host: str | None, port: int | None) -> None:
    """Migrate the database, then run web and worker together until interrupted."""
    settings = load_settings()
    host, port = host or settings.host, port or settings.port
    migrate(settings.effective_database_url)
    # Each of web and worker sets up where its processes' metrics go itself (metrics_sharing.py).
    environment = dict(os.environ, HOST=host, PORT=str(port))
    # gunicorn itself, not `webhook-service web`: the settings are already known good, and that process,
    # which loaded them again before it became gunicorn, kept the service from answering for 8 s, not 5.
    web = subprocess.Popen(GUNICORN_COMMAND, env=environment)
    worker = subprocess.Popen([sys.executable, "-m", "webhook_service.cli", "worker"], env=environment)
    children = [web, worker]
    asked_to_stop = []

    def stop_asked(*_):
        asked_to_stop.append(True)
        stop()

    def stop():
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    # SIGHUP too: the terminal `run` was started from went away (it signals the whole group), and a
    # service left running without it, its web and worker reparented, is one nobody can stop with Ctrl-C.
    for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(number, stop_asked)
    if _wait_for_port(host, port, web):
        shown = f"[{host}]" if ":" in host else host
        click.echo(
            f"webhook-service listening on http://{shown}:{port}  "
            f"(web: {settings.web_workers} gunicorn workers, worker: {settings.queue.worker_threads} "
            f"threads in {len(split_threads(settings.queue.worker_threads, settings.queue.worker_processes))} processes, data: {settings.data_dir.resolve()}, database: "
            f"{'SQLite' if settings.effective_database_url.startswith('sqlite') else 'PostgreSQL'})"
        )
    # Either process ending ends the service: a half-running service is worse than a stopped one.
    while all(child.poll() is None for child in children):
        time.sleep(0.5)
    stop()
    codes = [child.wait(timeout=30) for child in children]
    if asked_to_stop:
        # Stopping, a child may also get the signal straight from whoever stopped us (a process manager
        # signals the whole group) and then ours a moment later: one arriving while Python is already
        # finishing (its handlers reset), or a hangup before the child handles it, ends the process by
        # the signal. That is the stop we asked for.
        codes = [0 if code in (-signal.SIGTERM, -signal.SIGHUP) else code for code in codes]
    for name, code in zip(("web", "worker"), codes, strict=True):
        if code:
            click.echo(f"webhook-service: {name} exited with {_exit_description(code)}", err=True)
    sys.exit(next((code for code in codes if code), 0))


def _exit_description(code: int) -> str:
    return f"signal {signal.Signals(-code).name}" if code < 0 else f"code {code}"


def _wait_for_port(host: str, port: int, process: subprocess.Popen, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.2)
    return False


@click.command("migrate")
def migrate_command() -> None:
    """Apply database migrations (the run command does this itself)."""
    settings = load_settings()
    try:
        found = migrate(settings.effective_database_url)
    except UnknownRevision as error:
        raise click.ClickException(str(error)) from None
    if not found.pending:
        click.echo(f"database is up to date (revision {found.head}); nothing applied")
        return
    was = f"from revision {found.current}" if found.current else "to an empty database"
    click.echo(
        f"applied {plural(len(found.pending), 'migration')} {was} ({', '.join(found.pending)}): "
        f"database now at revision {found.head}"
    )
