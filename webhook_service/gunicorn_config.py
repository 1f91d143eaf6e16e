"""gunicorn settings, read from the service configuration (`webhook-service web` and the Procfile use this
file)."""

import os

from prometheus_client import multiprocess

from webhook_service.settings import load_settings

_settings = load_settings()

_host = f"[{_settings.host}]" if ":" in _settings.host else _settings.host
bind = [f"{_host}:{_settings.port}"]
workers = _settings.web_workers
# Threads overlap the database fsync of one request with the parsing of the next.
worker_class = "gthread"
threads = _settings.web_threads
# Providers give up after 2-15 s; a request still running after 30 s is stuck, not slow.
timeout = 30
graceful_timeout = 20
keepalive = 5
# The app logs one structured line per webhook; gunicorn's access log would repeat it unstructured.
accesslog = None
errorlog = "-"
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "webhook_service.observability.logs.JsonFormatter"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
    # gunicorn merges this over its defaults, whose root logger names a "console" handler: define it.
    "root": {"level": "INFO", "handlers": ["stderr"]},
    "loggers": {
        "gunicorn.error": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
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


def child_exit(server, worker):
    # Prometheus multiprocess mode: drop the gauges of a worker that is gone.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)
