"""gunicorn settings, read from the service configuration (`webhook-service web` and the Procfile use this
file)."""

import signal

from gunicorn.errors import HaltServer

from webhook_service.cli.failures import exit_on_operator_failure
from webhook_service.gunicorn_logging import json_access_logger
from webhook_service.gunicorn_worker import ClientLimits, request_buffering_worker
from webhook_service.observability.metrics_sharing import WEB, share_metrics, start_fresh
from webhook_service.parent_death import end_with_parent
from webhook_service.settings import load_settings

try:
    _settings = load_settings()
except Exception as error:
    # Said as the command line says it (`configuration error: ...`, exit 2), not as gunicorn's "Error:".
    exit_on_operator_failure(error)
    raise
# The workers' metrics go to files that every worker's /metrics adds up (and, on one host, the worker's
# too: observability/metrics_sharing.py). prometheus_client reads where when it is first imported, so
# only now; the workers, forked from this process, inherit it as imported here.
_metrics_directory = share_metrics(_settings.data_dir, WEB)
from prometheus_client import multiprocess  # noqa: E402

_host = f"[{_settings.host}]" if ":" in _settings.host else _settings.host
bind = [f"{_host}:{_settings.port}"]
workers = _settings.web_workers
# Threads overlap the database fsync of one request with the parsing of the next. gthread's own worker
# gives each connection a thread before its request has arrived: slow and idle clients could take them
# all. This one reads request heads, and bodies up to the webhook cap, in its poller first.
worker_class = request_buffering_worker(
    ClientLimits(
        header_seconds=_settings.web_header_timeout_seconds,
        body_seconds=_settings.web_body_timeout_seconds,
        body_min_bytes_per_second=_settings.web_body_min_bytes_per_second,
        buffered_body_bytes=_settings.webhook_max_body_bytes,
    )
)
threads = _settings.web_threads
# Providers give up after 2-15 s; a request still running after 30 s is stuck, not slow.
timeout = 30
graceful_timeout = 20
keepalive = 5
# The app logs one line per webhook. gunicorn's access line, when `access_log` is on, is JSON with the
# query's secrets hidden (gunicorn_logging.py); its own would be written whenever logconfig_dict is set.
accesslog = None
logger_class = json_access_logger(enabled=_settings.access_log)
errorlog = "-"
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "webhook_service.observability.logs.JsonFormatter"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
    # gunicorn merges this over its defaults, whose root logger names a "console" handler: define it.
    # The configured level (LOG_LEVEL), as every other logger of the service has it; access lines are
    # asked for on their own (access_log) and keep INFO.
    "root": {"level": _settings.log_level, "handlers": ["stderr"]},
    "loggers": {
        "gunicorn.error": {"handlers": ["stderr"], "level": _settings.log_level, "propagate": False},
        "gunicorn.access": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
    },
}
# Incoming bodies are capped by the app (webhooks 1 MiB, uploads more); header limits stay gunicorn's.
# Forwarded headers are believed in one place only, the app's ProxyFix (settings proxy.*, none by
# default): gunicorn's own handling (X-Forwarded-Proto from 127.0.0.1 would make the scheme https, and
# signature checks cover the URL) is switched off.
forwarded_allow_ips = ""
secure_scheme_headers: dict[str, str] = {}
forwarder_headers = ""
# gunicorn 27 opens a control socket for `gunicornc` at $XDG_RUNTIME_DIR/gunicorn.ctl or
# ~/.gunicorn/gunicorn.ctl: one path for every gunicorn the user runs, so each new server takes it over and
# the first to stop deletes it under the others. The service is stopped and reloaded by signals (its
# process manager's, or `webhook-service run`'s) and uses none of gunicornc's commands: no socket at all,
# rather than one per data directory, which several web processes sharing it would fight over the same way.
control_socket_disable = True


def post_fork(server, worker):
    # A worker ends with its master. Killed outright (SIGKILL, the OOM killer), the master cannot stop
    # its workers. gunicorn's own check (the worker's loop compares os.getppid() with the master's pid
    # about once a second) then stops gracefully, with the listening socket still open: it waits up to
    # graceful_timeout for requests still being read and for clients connected without a request yet.
    # Measured: 0.9 s idle, 2.7 s with a kept-alive client, 9.8 s with a client connected but silent,
    # over 40 s with a request body still arriving; meanwhile a restarted server cannot bind the port.
    # SIGKILL from the kernel as the master ends frees it at once, and loses nothing: a webhook not yet
    # answered 2xx is retried by its provider (it is durable before 2xx, and a retry of one already
    # stored is a duplicate), a download not yet enqueued is found by the worker's sweep. SIGTERM would
    # take the graceful path above, and SIGQUIT (gunicorn's quick stop) still lets the interpreter wait
    # for the threads inside requests. prctl is Linux's; elsewhere gunicorn's own check remains.
    end_with_parent(worker.ppid, signal.SIGKILL)


def on_starting(server):
    # The master starts: the values of the workers of a previous run are history. A data directory it
    # cannot write is its one line and exit code (6), before gunicorn listens or boots a worker.
    try:
        start_fresh(_metrics_directory)
    except Exception as error:
        exit_on_operator_failure(error)
        raise
    _halt_once(server)


def _halt_once(server) -> None:
    """A configuration the app cannot be built from fails every worker alike (wsgi.py exits them with
    gunicorn's "App failed to load" code, 4). The master halts at the first; while it stops the others, the
    second's exit raised the same HaltServer again, out of the halt itself, and the master died with a
    traceback and exit code 1 instead of 4, depending on which worker was reaped when. Stopping again
    after such a second halt finishes stopping the rest (each raise came after its worker was reaped), and
    the first reason and exit code stand."""
    stop = server.stop

    def stop_whatever_else_fails(graceful: bool = True) -> None:
        while True:
            try:
                return stop(graceful)
            except HaltServer as again:
                server.log.info("while stopping: %s", again.reason)

    server.stop = stop_whatever_else_fails


def child_exit(server, worker):
    # A worker that is gone: its live gauges no longer count (its counters do).
    multiprocess.mark_process_dead(worker.pid)
