"""`webhook-service`: run the service, and the operator commands (quarantine, attachments, keys).

    webhook-service run                 migrate, then start web (gunicorn) and worker together
    webhook-service web | worker        one of them (Procfile)
    webhook-service migrate | check-config | hash-password | new-api-key | prune
    webhook-service quarantine list | show ID | replay ID... | discard ID...
    webhook-service attachments list | retry ID... | retry --all-failed
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import click
import sqlalchemy as sa

from .config import ConfigError, Settings, load_settings
from .db import migrate


@click.group()
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="TOML configuration file (default: $WEBHOOK_SERVICE_CONFIG).")
@click.pass_context
def cli(context: click.Context, config_path: str | None) -> None:
    """SMS/MMS webhook intake and media service."""
    if config_path:
        os.environ["WEBHOOK_SERVICE_CONFIG"] = os.path.abspath(config_path)
    context.obj = {}


def _settings() -> Settings:
    return load_settings()


def _runtime():
    from .logs import configure_logging
    from .runtime import Runtime

    settings = _settings()
    configure_logging(settings.log_level)
    return Runtime(settings)


# Serving ---------------------------------------------------------------------------------------

@cli.command()
@click.option("--host", help="Interface to listen on (default: settings.host, 127.0.0.1).")
@click.option("--port", type=int, help="Port to listen on (default: settings.port, 8000).")
def run(host: str | None, port: int | None) -> None:
    """Migrate the database, then run web and worker together until interrupted."""
    settings = _settings()
    host, port = host or settings.host, port or settings.port
    migrate(settings.effective_database_url)
    environment = _serving_environment(settings, host, port)
    web = subprocess.Popen([sys.executable, "-m", "webhook_service.cli", "web"], env=environment)
    worker = subprocess.Popen([sys.executable, "-m", "webhook_service.cli", "worker"], env=environment)
    children = [web, worker]

    def stop(*_):
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if _wait_for_port(host, port, web):
        shown = f"[{host}]" if ":" in host else host
        click.echo(f"webhook-service listening on http://{shown}:{port}  "
                   f"(web: {settings.web_workers} gunicorn workers, worker: {settings.queue.worker_threads} "
                   f"threads in {len(_worker_shares(settings))} processes, data: {settings.data_dir.resolve()}, database: "
                   f"{'SQLite' if settings.effective_database_url.startswith('sqlite') else 'PostgreSQL'})")
    # Either process ending ends the service: a half-running service is worse than a stopped one.
    while all(child.poll() is None for child in children):
        time.sleep(0.5)
    stop()
    codes = [child.wait(timeout=30) for child in children]
    sys.exit(next((code for code in codes if code), 0))


def _worker_shares(settings: Settings, threads: int | None = None, processes: int | None = None) -> list[int]:
    """The download threads of each worker process."""
    from .worker_processes import split_threads

    return split_threads(threads or settings.queue.worker_threads, processes or settings.queue.worker_processes)


def _serving_environment(settings: Settings, host: str, port: int) -> dict[str, str]:
    environment = dict(os.environ, HOST=host, PORT=str(port))
    metrics_dir = settings.data_dir.resolve() / "prometheus"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True, exist_ok=True)
    environment.setdefault("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))
    return environment


def _wait_for_port(host: str, port: int, process: subprocess.Popen, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.2)
    return False


@cli.command()
def web() -> None:
    """The HTTP service under gunicorn (settings: host, port, web_workers, web_threads)."""
    _settings()  # fail here with one line rather than in every gunicorn worker
    os.execvp(sys.executable, [sys.executable, "-m", "gunicorn", "--config",
                               "python:webhook_service.gunicorn_config", "webhook_service.app:create_app()"])


@cli.command()
@click.option("--threads", type=int,
              help="Concurrent downloads in all (default: settings.queue.worker_threads).")
@click.option("--processes", type=int,
              help="Processes to spread them over (default: settings.queue.worker_processes, or one per CPU).")
@click.option("--no-periodic", is_flag=True, hidden=True,
              help="Leave the minute's sweep to another process (the supervisor passes it to all but one).")
@click.option("--supervised", is_flag=True, hidden=True, help="Started by a worker supervisor: stop when it is gone.")
def worker(threads: int | None, processes: int | None, no_periodic: bool, supervised: bool) -> None:
    """The queue consumer: downloads, checks and stores attachments; sweeps pending ones every minute."""
    from .worker_processes import WorkerProcesses, stop_when_orphaned

    if (threads is not None and threads < 1) or (processes is not None and processes < 1):
        raise click.UsageError("--threads and --processes must be at least 1")
    settings = _settings()
    shares = _worker_shares(settings, threads, processes)
    if len(shares) > 1:
        from .logs import configure_logging

        configure_logging(settings.log_level)
        sys.exit(WorkerProcesses(shares).run())
    runtime = _runtime()
    if supervised:
        stop_when_orphaned()
    runtime.queue.consumer(shares[0], periodic=not no_periodic).run()


@cli.command("migrate")
def migrate_command() -> None:
    """Apply database migrations (the run command does this itself)."""
    settings = _settings()
    migrate(settings.effective_database_url)
    click.echo("database is up to date")


@cli.command("check-config")
def check_config() -> None:
    """Validate the configuration and summarize it (no secrets)."""
    settings = _settings()
    click.echo(f"environment: {settings.environment}")
    click.echo(f"database: {sa.engine.make_url(settings.effective_database_url).render_as_string()}")
    click.echo(f"queue: {'Redis' if settings.redis_url else 'SQLite'}; storage: {settings.storage.backend}")
    click.echo(f"tenants: {len(settings.tenants)}, API users: {len(settings.api_users)}, "
               f"API keys: {len(settings.api_keys)}")
    for connection in settings.connections:
        checks = [name for name, present in (("signature", connection.secrets),
                                             ("basic auth", connection.basic_auth)) if present]
        state = ", ".join(checks) if connection.verify else "UNSIGNED (development)"
        click.echo(f"  /webhooks/{connection.provider}/{connection.name}  tenant={connection.tenant}  [{state}]")


@cli.command("hash-password")
@click.password_option()
def hash_password(password: str) -> None:
    """Print a password hash for an [[api_users]] entry."""
    from werkzeug.security import generate_password_hash

    click.echo(generate_password_hash(password))


@cli.command("new-api-key")
def new_api_key() -> None:
    """Generate a bearer API key; print it (give it to the client) and its hash (put it in the config)."""
    key = "wsk_" + secrets.token_urlsafe(32)
    click.echo(f"key:        {key}")
    click.echo(f"key_sha256: {hashlib.sha256(key.encode()).hexdigest()}")


@cli.command()
@click.option("--days", type=int, help="Keep this many days (default: settings.retention_days).")
def prune(days: int | None) -> None:
    """Delete accepted raw requests and resolved quarantine entries older than the retention period.
    Messages, statuses and attachments are kept."""
    from .models import QuarantinedRequest, RawRequest

    runtime = _runtime()
    cutoff = datetime.now(timezone.utc) - timedelta(days=days or runtime.settings.retention_days)
    with runtime.db.transaction() as session:
        raw = session.execute(sa.delete(RawRequest).where(RawRequest.received_at < cutoff)).rowcount
        quarantined = session.execute(sa.delete(QuarantinedRequest).where(
            QuarantinedRequest.received_at < cutoff)).rowcount
    click.echo(f"deleted {raw} raw requests and {quarantined} quarantined requests older than {cutoff:%Y-%m-%d}")


# Quarantine ------------------------------------------------------------------------------------

@cli.group()
def quarantine() -> None:
    """Webhook requests refused with 401/400/413, kept whole for review."""


@quarantine.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include resolved entries.")
@click.option("--provider")
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def quarantine_list(show_all: bool, provider: str | None, limit: int, as_json: bool) -> None:
    from .models import QuarantinedRequest

    runtime = _runtime()
    query = sa.select(QuarantinedRequest).order_by(QuarantinedRequest.id.desc()).limit(limit)
    if not show_all:
        query = query.where(QuarantinedRequest.resolved_at.is_(None))
    if provider:
        query = query.where(QuarantinedRequest.provider == provider)
    with runtime.db.reading() as session:
        rows = session.scalars(query).all()
        entries = [{"id": r.id, "receivedAt": r.received_at.isoformat(), "provider": r.provider,
                    "connection": r.connection, "status": r.http_status, "reason": r.reason_code,
                    "detail": r.reason, "bytes": len(r.body), "resolution": r.resolution} for r in rows]
    if as_json:
        click.echo(json.dumps(entries, indent=2))
        return
    for e in entries:
        click.echo(f"{e['id']:>8}  {e['receivedAt'][:19]}  {e['provider']}/{e['connection']}  {e['status']}  "
                   f"{e['reason']}: {e['detail']}" + (f"  [{e['resolution']}]" if e["resolution"] else ""))
    if not entries:
        click.echo("quarantine is empty")


@quarantine.command("show")
@click.argument("entry_id", type=int)
def quarantine_show(entry_id: int) -> None:
    """Print one entry: reason, headers and the body exactly as received."""
    from .models import QuarantinedRequest

    runtime = _runtime()
    with runtime.db.reading() as session:
        row = session.get(QuarantinedRequest, entry_id)
        if row is None:
            raise click.ClickException(f"no quarantined request {entry_id}")
        click.echo(f"{row.method} {row.url}\nreceived {row.received_at.isoformat()} from {row.remote_addr}")
        click.echo(f"refused {row.http_status} {row.reason_code}: {row.reason}\n")
        for name, value in row.headers:
            click.echo(f"{name}: {value}")
        click.echo("")
        click.echo(row.body.decode("utf-8", "backslashreplace"))


@quarantine.command("replay")
@click.argument("entry_ids", type=int, nargs=-1, required=True)
@click.option("--trust", is_flag=True,
              help="Skip verification: you vouch for these requests (e.g. refused under a wrong secret).")
def quarantine_replay(entry_ids: tuple[int, ...], trust: bool) -> None:
    """Run requests through the intake again. Signatures are re-checked against the current secrets
    and the original arrival time; stored credentials were redacted, so Basic-auth or token-only
    connections need --trust."""
    from werkzeug.datastructures import Headers

    from .intake import CHECK_NOTHING, CHECK_SIGNATURE, process
    from .models import QuarantinedRequest
    from .providers import ADAPTERS, WebhookRequest

    runtime = _runtime()
    failures = 0
    with click.progressbar(entry_ids, label="replaying", file=sys.stderr) as ids:
        for entry_id in ids:
            with runtime.db.reading() as session:
                row = session.get(QuarantinedRequest, entry_id)
            adapter = ADAPTERS.get(row.provider) if row else None
            connection = runtime.connections.find(row.provider, row.connection) if adapter else None
            if row is None or connection is None:
                click.echo(f"\n{entry_id}: not found, or its connection no longer exists", err=True)
                failures += 1
                continue
            request = WebhookRequest(method=row.method, url=row.url, headers=Headers(row.headers),
                                     body=row.body, received_at=row.received_at, remote_addr=row.remote_addr)
            result = process(runtime, adapter, connection, request, f"replay-{entry_id}",
                             check=CHECK_NOTHING if trust else CHECK_SIGNATURE, quarantine_refused=False)
            if result.status == 200:
                _resolve(runtime, entry_id, "replayed")
            else:
                failures += 1
                click.echo(f"\n{entry_id}: still refused ({result.status} {result.reason_code}: {result.detail})",
                           err=True)
    click.echo(f"replayed {len(entry_ids) - failures} of {len(entry_ids)}")
    sys.exit(1 if failures else 0)


@quarantine.command("discard")
@click.argument("entry_ids", type=int, nargs=-1, required=True)
def quarantine_discard(entry_ids: tuple[int, ...]) -> None:
    """Mark entries as reviewed and not to be replayed (they stay until `prune`)."""
    runtime = _runtime()
    for entry_id in entry_ids:
        _resolve(runtime, entry_id, "discarded")
    click.echo(f"discarded {len(entry_ids)}")


def _resolve(runtime, entry_id: int, resolution: str) -> None:
    from .models import QuarantinedRequest

    with runtime.db.transaction() as session:
        session.execute(sa.update(QuarantinedRequest).where(QuarantinedRequest.id == entry_id)
                        .values(resolved_at=datetime.now(timezone.utc), resolution=resolution))


# Attachments ------------------------------------------------------------------------------------

@cli.group()
def attachments() -> None:
    """Downloaded media: list failures and rejections, retry them."""


@attachments.command("list")
@click.option("--status", type=click.Choice(["failed", "rejected", "pending", "stored"]), multiple=True,
              help="Default: failed and rejected.")
@click.option("--reason", help="Only this reason code (e.g. timeout, type_not_allowed).")
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def attachments_list(status: tuple[str, ...], reason: str | None, limit: int, as_json: bool) -> None:
    from .models import Attachment, Message

    runtime = _runtime()
    query = (sa.select(Attachment, Message.id, Message.provider).join(Message)
             .where(Attachment.status.in_(status or ("failed", "rejected")))
             .order_by(Attachment.updated_at.desc()).limit(limit))
    if reason:
        query = query.where(Attachment.reason_code == reason)
    with runtime.db.reading() as session:
        rows = [{"id": a.id, "messageId": message_id, "provider": provider, "index": a.index,
                 "status": a.status, "reasonCode": a.reason_code, "reason": a.reason, "attempts": a.attempts,
                 "declaredContentType": a.declared_content_type, "updatedAt": a.updated_at.isoformat()}
                for a, message_id, provider in session.execute(query)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['id']}  {row['status']:<8}  {row['provider']:<15} attempts={row['attempts']}  "
                   f"{row['reasonCode']}: {row['reason']}")
    if not rows:
        click.echo("nothing to show")


@attachments.command("retry")
@click.argument("attachment_ids", nargs=-1)
@click.option("--all-failed", is_flag=True, help="Every failed attachment.")
@click.option("--reason", help="With --all-failed: only this reason code; also selects rejected ones.")
def attachments_retry(attachment_ids: tuple[str, ...], all_failed: bool, reason: str | None) -> None:
    """Put failed/rejected attachments back in the queue with a fresh retry budget."""
    from .media.pipeline import reset_for_retry
    from .models import Attachment

    runtime = _runtime()
    ids = list(attachment_ids)
    if all_failed:
        query = sa.select(Attachment.id)
        if reason:
            query = query.where(Attachment.status.in_(("failed", "rejected")), Attachment.reason_code == reason)
        else:
            query = query.where(Attachment.status == "failed")
        with runtime.db.reading() as session:
            ids += list(session.scalars(query))
    if not ids:
        raise click.UsageError("name attachment ids, or use --all-failed")
    reset = []
    batches = [ids[start:start + 200] for start in range(0, len(ids), 200)]
    with click.progressbar(batches, label=f"retrying {len(ids)} attachments", file=sys.stderr) as progress:
        for batch in progress:
            reset += reset_for_retry(runtime, batch)
    click.echo(f"queued {len(reset)} of {len(ids)} for another attempt"
               + ("" if len(reset) == len(ids) else " (the others are not failed or rejected)"))


def main() -> None:
    try:
        cli(standalone_mode=True)
    except ConfigError as error:
        click.echo(f"configuration error: {error}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
