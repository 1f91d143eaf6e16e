"""GET /healthz (the process is alive), /readyz (its dependencies answer), /metrics (Prometheus)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from flask import Blueprint, Response

from webhook_service.observability import metrics
from webhook_service.observability.logs import log

logger = logging.getLogger("webhook_service.health")

# A readiness probe returns when its dependency answers and raises when it does not.
Probe = Callable[[], object]


def health_blueprint(probes: Mapping[str, Probe]) -> Blueprint:
    """The health endpoints; `probes` name each dependency /readyz checks, in the order reported."""
    blueprint = Blueprint("health", __name__)

    @blueprint.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @blueprint.get("/readyz")
    def readyz():
        checks = run_probes(probes)
        ready = all(value == "ok" for value in checks.values())
        return {"status": "ready" if ready else "unavailable", "checks": checks}, (200 if ready else 503)

    @blueprint.get("/metrics")
    def prometheus_metrics():
        body, content_type = metrics.render()
        return Response(body, content_type=content_type)

    return blueprint


def run_probes(probes: Mapping[str, Probe]) -> dict[str, str]:
    """Each dependency's state: "ok", or "unavailable: <error>" (also shown by the operator console)."""
    checks = {}
    for name, probe in probes.items():
        try:
            probe()
            checks[name] = "ok"
        except Exception as error:  # noqa: BLE001  # a readiness probe reports every failure rather than raising
            log(logger, "readiness_check_failed", logging.WARNING, check=name, error=type(error).__name__)
            checks[name] = f"unavailable: {type(error).__name__}"
    return checks
