"""GET /healthz (the process is alive), /readyz (its dependencies answer), /metrics (Prometheus)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from flask import Blueprint, Response

from webhook_service.observability import metrics
from webhook_service.observability.logs import log

logger = logging.getLogger("webhook_service.health")

# The probe whose failure the spool covers for webhooks.
DATABASE = "database"

# A readiness probe returns when its dependency answers and raises when it does not.
Probe = Callable[[], object]


def health_blueprint(
    probes: Mapping[str, Probe], *, metrics_directories: Sequence[Path] = (), spool: Callable[[], dict] | None = None
) -> Blueprint:
    """The health endpoints; `probes` name each dependency /readyz checks, in the order reported;
    /metrics adds up the values processes wrote under `metrics_directories` (none: this process's).

    `spool` reports the intake's spool (its depth, age and size, and whether it takes more). While the
    database alone is down and the spool takes more, webhooks are still acknowledged: /readyz answers
    200 with status "degraded", so that a load balancer keeps sending them here. /metrics reads it too,
    so that its gauges are current."""
    blueprint = Blueprint("health", __name__)

    @blueprint.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @blueprint.get("/readyz")
    def readyz():
        checks = run_probes(probes)
        body: dict = {"status": "ready", "checks": checks}
        failing = {name for name, value in checks.items() if value != "ok"}
        if spool is not None:
            body["spool"] = _spool_report(spool)
            if failing == {DATABASE} and body["spool"].get("accepting"):
                failing, body["status"] = set(), "degraded"
        if failing:
            body["status"] = "unavailable"
        return body, (503 if failing else 200)

    @blueprint.get("/metrics")
    def prometheus_metrics():
        if spool is not None:
            _spool_report(spool)  # sets the spool's gauges
        body, content_type = metrics.render(metrics_directories)
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


def _spool_report(spool: Callable[[], dict]) -> dict:
    try:
        return spool()
    except Exception as error:  # noqa: BLE001  # reported, like a failed probe
        log(logger, "spool_report_failed", logging.WARNING, error=type(error).__name__, exc_info=True)
        return {"accepting": False, "error": type(error).__name__}
