"""The Flask application factory: the web process's composition. Each part's blueprint is made here
with the long-lived objects it needs from the Runtime."""

from __future__ import annotations

import logging

from flask import Flask, Response
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from webhook_service.api.docs_page import docs_blueprint
from webhook_service.api.endpoints import endpoints_api_blueprint
from webhook_service.api.errors import (
    OUTAGE_ERRORS,
    ApiError,
    api_error,
    render_api_error,
    render_http_exception,
    render_outage,
)
from webhook_service.api.local_media import local_media_blueprint
from webhook_service.api.media import media_api_blueprint
from webhook_service.api.messages import read_api_blueprint
from webhook_service.api.openapi import DOCUMENT_PATH, DOCUMENT_TITLE, openapi_blueprint
from webhook_service.config.model import Settings
from webhook_service.console.blueprint import console_blueprint
from webhook_service.console.context import ConsoleParts
from webhook_service.intake.http import WebhookReceiver, WebhookRoutes
from webhook_service.media.links import SIGNATURE_QUERY_PARAMS
from webhook_service.observability.health import health_blueprint
from webhook_service.observability.logs import configure_logging, log
from webhook_service.observability.metrics_sharing import web_scrape_directories
from webhook_service.observability.request_ids import RequestIds
from webhook_service.providers.base import REDACTED_QUERY_PARAMS
from webhook_service.runtime import Runtime
from webhook_service.settings import load_settings

logger = logging.getLogger("webhook_service.app")


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> Flask:
    """Build the app from validated settings (loaded from the environment when not given). Does not
    touch the database: migrations are the run command's job, and a database that is down must give
    503s, not a service that refuses to start."""
    if runtime is None:
        runtime = Runtime(settings or load_settings())
    settings = runtime.settings
    configure_logging(settings.log_level)

    app = Flask(__name__, static_folder=None)
    app.json.sort_keys = False  # type: ignore[attr-defined]  # the default provider has it
    # Bodies are capped per endpoint (webhooks 1 MiB, media uploads larger); multipart uploads keep
    # their file part on disk, but form fields must fit this.
    app.config["MAX_FORM_MEMORY_SIZE"] = settings.webhook_max_body_bytes

    # Webhooks are answered before Flask (intake/http.py says why), inside the middleware below.
    app.wsgi_app = WebhookRoutes(  # type: ignore[method-assign]  # Flask's documented way to add middleware
        WebhookReceiver(
            runtime.intake, max_body_bytes=settings.webhook_max_body_bytes, public_base_url=settings.public_base_url
        ),
        app.wsgi_app,
    )
    # The one place forwarded headers are believed: as many proxies as configured, none by default.
    proxy = settings.proxy
    if any((proxy.x_for, proxy.x_proto, proxy.x_host, proxy.x_port, proxy.x_prefix)):
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]  # Flask's documented way to add middleware
            app.wsgi_app,
            x_for=proxy.x_for,
            x_proto=proxy.x_proto,
            x_host=proxy.x_host,
            x_port=proxy.x_port,
            x_prefix=proxy.x_prefix,
        )
    # Every request gets its id (in its log lines and its X-Request-Id answer header). The access line
    # hides these parameters' values on every path: credentials, and signed URLs' signatures (anyone who
    # reads one could fetch the file); the intake adds each connection's own.
    app.wsgi_app = RequestIds(  # type: ignore[method-assign]
        app.wsgi_app, secret_query_params=REDACTED_QUERY_PARAMS | SIGNATURE_QUERY_PARAMS
    )

    app.register_blueprint(
        read_api_blueprint(runtime.db, runtime.api_auth, runtime.links, region=settings.phone_default_region)
    )
    app.register_blueprint(
        media_api_blueprint(runtime.uploads, runtime.links, runtime.api_auth, settings, work_dir=runtime.work_dir)
    )
    app.register_blueprint(endpoints_api_blueprint(runtime.endpoints, runtime.api_auth))
    app.register_blueprint(
        openapi_blueprint(
            max_file_bytes=runtime.media_policy.max_bytes, allowed_types=sorted(runtime.media_policy.allowed_types)
        )
    )
    app.register_blueprint(docs_blueprint(document_path=DOCUMENT_PATH, title=DOCUMENT_TITLE))
    app.register_blueprint(local_media_blueprint(runtime.blob_store))
    probes = {"database": runtime.db.ping, "queue": lambda: runtime.queue.ping(), "blobStore": runtime.blob_store.check}
    app.register_blueprint(
        health_blueprint(
            probes,
            metrics_directories=web_scrape_directories(
                settings.data_dir, worker_serves_its_own=bool(settings.worker_metrics_port)
            ),
            spool=runtime.spool.report if runtime.spool else None,
        )
    )
    console = ConsoleParts(
        db=runtime.db,
        links=runtime.links,
        settings=settings,
        replay=runtime.intake.replay,
        retry=runtime.attachments.retry,
        probes=probes,
        queue_waiting=lambda: runtime.queue.waiting(),
        endpoints=runtime.endpoints,
    )
    app.register_blueprint(console_blueprint(console, secret_key=runtime.secret_key))

    app.register_error_handler(ApiError, render_api_error)
    # Registered once for every blueprint, so that the read API, the media API and local media URLs all
    # answer a database or blob store outage with the same 503 and Retry-After. (The intake answers its
    # own 503 in the shape providers get, with its request id; it never lets one reach this handler.)
    for outage in OUTAGE_ERRORS:
        app.register_error_handler(outage, render_outage)
    app.register_error_handler(HTTPException, render_http_exception)
    app.register_error_handler(Exception, _unexpected_error)
    return app


def _unexpected_error(error: Exception) -> Response:
    # A bug: log it with its traceback, answer without details.
    log(logger, "unhandled_exception", logging.ERROR, error=type(error).__name__, exc_info=True)
    return api_error(500, "internal_error", "An unexpected error occurred.")
