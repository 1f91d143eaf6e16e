"""Running the service: `run` (migrate, then web and worker together) and `migrate`."""

from __future__ import annotations

import errno
import http.client
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence

import click
from gunicorn.util import is_ipv6

from webhook_service.cli.failures import CannotListen
from webhook_service.cli.output import plural
from webhook_service.cli.web import GUNICORN_COMMAND
from webhook_service.config.model import ConfigError, Settings
from webhook_service.database.migrate import UnknownRevision, migrate
from webhook_service.observability.metrics_sharing import WEB, WORKER, metrics_directory, start_fresh
from webhook_service.parent_death import end_with_parent
from webhook_service.runtime import Runtime, problems_found_at_start
from webhook_service.settings import load_settings
from webhook_service.worker.supervisor import STOP_TIMEOUT, split_threads


@click.command()
@click.option("--host", help="Interface to listen on (default: settings.host, 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port to listen on (default: settings.port, 8000).")
def run(host: str | None, port: int | None) -> None:
    """Migrate the database, then run web and worker together until interrupted."""
    settings = _startable_settings(host, port)
    host, port = settings.host, settings.port
    _refuse_unless_free(host, port)
    migrate(settings.effective_database_url)
    _make_what_they_start_from(settings)
    # Each of web and worker sets up where its processes' metrics go itself (metrics_sharing.py).
    environment = dict(os.environ, HOST=host, PORT=str(port))
    # gunicorn itself, not `webhook-service web`: the settings are already known good, and that process,
    # which loaded them again before it became gunicorn, kept the service from answering for 8 s, not 5.
    children: dict[str, subprocess.Popen] = {}
    asked_to_stop = []

    def stop_asked(*_):
        asked_to_stop.append(True)
        stop(at_once=len(asked_to_stop) > 1)

    def stop(at_once: bool = False):
        for name, child in children.items():
            if child.poll() is None:
                child.send_signal((_STOP_AT_ONCE if at_once else _STOP_GRACEFULLY)[name])

    # Set before the children start: a stop between their start and the handlers' would end `run` by the
    # signal, leaving them to the kernel's parent-death signal. SIGHUP too: the terminal `run` was started
    # from went away (it signals its foreground group, `run`), and a service left running without it, its
    # web and worker reparented, is one nobody can stop with Ctrl-C.
    for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(number, stop_asked)
    children["web"] = _start_child(GUNICORN_COMMAND, environment, "web")
    children["worker"] = _start_child([sys.executable, "-m", "webhook_service.cli", "worker"], environment, "worker")
    if asked_to_stop:  # while they started
        stop()
    if _wait_for_port(host, port, children["web"]):
        shown = f"[{host}]" if ":" in host else host
        click.echo(
            f"webhook-service listening on http://{shown}:{port}  "
            f"(web: {settings.web_workers} gunicorn workers, worker: {settings.queue.worker_threads} "
            f"threads in {len(split_threads(settings.queue.worker_threads, settings.queue.worker_processes))} processes, data: {settings.data_dir.resolve()}, database: "
            f"{'SQLite' if settings.effective_database_url.startswith('sqlite') else 'PostgreSQL'})"
        )
    # Either process ending ends the service: a half-running service is worse than a stopped one.
    while all(child.poll() is None for child in children.values()):
        time.sleep(0.5)
    stop()
    codes = [_wait_to_end(name, child) for name, child in children.items()]
    if asked_to_stop:
        # A child ended by a stop signal is the stop we asked for: ours, arriving before the child set its
        # handlers (a `run` stopped as it starts: the worker's SIGINT then ends it as a KeyboardInterrupt
        # does), or while Python is already finishing (its handlers reset); or one straight from whoever
        # stopped us (a process manager that signals every process of the service, as systemd does).
        codes = [0 if code in _ENDED_BY_A_STOP else code for code in codes]
    for name, code in zip(children, codes, strict=True):
        if code:
            click.echo(f"webhook-service: {name} exited with {_exit_description(code)}", err=True)
    sys.exit(next((code for code in codes if code), 0))


# How each child stops: gracefully at `run`'s first stop signal, at once at a second. gunicorn's graceful
# stop is SIGTERM (SIGINT and SIGQUIT are its quick one, which cuts the requests in progress); the worker's
# is SIGINT (SIGTERM, or a second stop of any kind, ends the downloads in progress).
_STOP_GRACEFULLY = {"web": signal.SIGTERM, "worker": signal.SIGINT}
_STOP_AT_ONCE = {"web": signal.SIGQUIT, "worker": signal.SIGTERM}
_ENDED_BY_A_STOP = {-signal.SIGTERM, -signal.SIGINT, -signal.SIGQUIT, -signal.SIGHUP}
# How long `run` waits for a child once stopped: the worker waits up to STOP_TIMEOUT for its downloads
# before it kills its consumers, gunicorn up to its graceful_timeout (20 s) for its requests.
_STOP_WAIT_SECONDS = STOP_TIMEOUT + 30


def _start_child(command: Sequence[str], environment: dict[str, str], name: str) -> subprocess.Popen:
    """`web` or `worker` in a process group of its own: a terminal signals its foreground group (Ctrl-C,
    a hangup when it closes), which is then `run` alone, and `run` tells each child once the stop that is
    graceful for it. Before, both also heard the terminal's SIGINT: gunicorn's quick stop, and the worker
    took `run`'s stop after it as a second one, ending the downloads in progress. Killed outright, `run`
    cannot tell them: the kernel does, with the same graceful stop (Linux)."""
    run_pid = os.getpid()
    graceful = _STOP_GRACEFULLY[name]
    # preexec_fn runs between fork and exec; `run` has no other thread that could hold a lock there.
    return subprocess.Popen(
        command, env=environment, process_group=0, preexec_fn=lambda: end_with_parent(run_pid, graceful)
    )


def _wait_to_end(name: str, child: subprocess.Popen) -> int:
    try:
        return child.wait(timeout=_STOP_WAIT_SECONDS)
    except subprocess.TimeoutExpired:
        click.echo(f"webhook-service: {name} did not stop within {_STOP_WAIT_SECONDS:.0f} s: killed", err=True)
        child.kill()
        return child.wait()


def _exit_description(code: int) -> str:
    return f"signal {signal.Signals(-code).name}" if code < 0 else f"code {code}"


def _startable_settings(host: str | None, port: int | None) -> Settings:
    """The settings web and worker will run with (the host and port given here included), checked once
    here as each of them would check them as it starts: a problem is then said once, before anything
    starts, not by every gunicorn worker and the worker after "listening"."""
    given = {name: value for name, value in (("host", host), ("port", port)) if value is not None}
    settings = load_settings(overrides=given)
    problems = problems_found_at_start(settings)
    if problems:
        more = f" (and {len(problems) - 1} more: check-config lists them)" if len(problems) > 1 else ""
        raise ConfigError(problems[0] + more, problems)
    return settings


def _make_what_they_start_from(settings: Settings) -> None:
    """What web and worker make in their directories as they start (their metrics' directories, then the
    runtime: the development key, the local store, the scratch space), made here first: a directory they
    could not make or write in (data_dir, storage.local_dir) is then said once, before either starts, as
    a problem of the configuration is (above). Before, every gunicorn worker and the worker each printed
    its traceback, after gunicorn had said it was listening. They make the same again as they start
    (finding it made), as they do when started alone."""
    for kind in (WEB, WORKER):
        start_fresh(metrics_directory(settings.data_dir, kind))
    Runtime(settings).close()


def _refuse_unless_free(host: str, port: int) -> None:
    """Raise CannotListen unless gunicorn will be able to listen on host:port: bound and listened on
    as gunicorn's own socket is (sock.py: its address family, SO_REUSEADDR), then let go. With
    SO_REUSEADDR a port whose last connections wait out TIME_WAIT (a service just stopped) is free, as it
    is for gunicorn; a socket listening there is not, whatever its options (Linux shares a listening
    port only between sockets that all set SO_REUSEPORT, which gunicorn does not). The listen() matters
    too: beside a socket that is bound but not listening, such a bind succeeds and listen() fails."""
    family = socket.AF_INET6 if is_ipv6(host) else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
            probe.listen()
    except OSError as error:
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if error.errno == errno.EADDRINUSE:
            message = f"{where} is already in use: stop what listens there or choose --port"
        else:  # not an address of this machine (EADDRNOTAVAIL), a name that resolves to none, a port below 1024
            message = f"cannot listen on {where}: {error.strerror or error}"
        raise CannotListen(message) from None


def _wait_for_port(host: str, port: int, process: subprocess.Popen, timeout: float = 60) -> bool:
    """Whether the service answers at host:port before `process` (gunicorn) exits or `timeout` passes:
    GET /healthz answered as the service answers it, 200 and its JSON, with the request id sent here in
    its X-Request-Id. That a connection is accepted says only that something listens (another program,
    until the bind check above; gunicorn's master before any worker serves). Asked at the address
    gunicorn binds (IPv4 unless the host is an IPv6 address), not at each address a name resolves to."""
    address = host if is_ipv6(host) else socket.gethostbyname(host)
    request_id = secrets.token_hex(16)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        # A request sent while gunicorn's workers still load the app waits in the listen backlog until
        # one takes it, and is answered the moment one serves: given the time that may take.
        connection = http.client.HTTPConnection(address, port, timeout=10)
        try:
            connection.request("GET", "/healthz", headers={"X-Request-Id": request_id})
            answer = connection.getresponse()
            ours = answer.status == 200 and answer.getheader("X-Request-Id") == request_id
            if ours and json.loads(answer.read()) == {"status": "ok"}:
                return True
        except (OSError, http.client.HTTPException, ValueError):
            pass  # not listening yet, or not the service
        finally:
            connection.close()
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
