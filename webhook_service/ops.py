"""GET /healthz (the process is alive), /readyz (its dependencies answer), /metrics (Prometheus)."""
from __future__ import annotations

import logging

from flask import Blueprint, Response

from . import metrics
from .logs import log
from .runtime import current_runtime

logger = logging.getLogger("webhook_service.ops")
blueprint = Blueprint("ops", __name__)


@blueprint.get("/healthz")
def healthz():
    return {"status": "ok"}


@blueprint.get("/readyz")
def readyz():
    runtime = current_runtime()
    checks = {}
    for name, probe in (("database", runtime.db.ping),
                        ("queue", runtime.queue.ping),
                        ("blobStore", lambda: runtime.blob_store.check())):
        try:
            probe()
            checks[name] = "ok"
        except Exception as error:  # a readiness probe reports every failure rather than raising
            log(logger, "readiness_check_failed", logging.WARNING, check=name, error=type(error).__name__)
            checks[name] = f"unavailable: {type(error).__name__}"
    ready = all(value == "ok" for value in checks.values())
    return {"status": "ready" if ready else "unavailable", "checks": checks}, (200 if ready else 503)


@blueprint.get("/metrics")
def prometheus_metrics():
    body, content_type = metrics.render()
    return Response(body, content_type=content_type)
