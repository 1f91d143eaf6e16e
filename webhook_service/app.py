"""The Flask application factory."""
from __future__ import annotations

import logging

from flask import Flask
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from .api.errors import ApiError, api_error, render_api_error, render_http_exception
from .config import Settings, load_settings
from .logs import configure_logging, log
from .runtime import EXTENSION_KEY, Runtime

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
    app.json.sort_keys = False
    # Bodies are capped per endpoint (webhooks 1 MiB, media uploads larger); multipart uploads keep
    # their file part on disk, but form fields must fit this.
    app.config["MAX_FORM_MEMORY_SIZE"] = settings.webhook_max_body_bytes
    app.extensions[EXTENSION_KEY] = runtime

    proxy = settings.proxy
    if any((proxy.x_for, proxy.x_proto, proxy.x_host, proxy.x_port, proxy.x_prefix)):
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxy.x_for, x_proto=proxy.x_proto,
                                x_host=proxy.x_host, x_port=proxy.x_port, x_prefix=proxy.x_prefix)

    from . import intake, media_serving, ops
    from .api import media, messages, openapi

    app.register_blueprint(intake.blueprint)
    app.register_blueprint(messages.blueprint)
    app.register_blueprint(media.blueprint)
    app.register_blueprint(openapi.blueprint)
    app.register_blueprint(media_serving.blueprint)
    app.register_blueprint(ops.blueprint)

    app.register_error_handler(ApiError, render_api_error)
    app.register_error_handler(HTTPException, render_http_exception)
    app.register_error_handler(Exception, _unexpected_error)
    return app


def _unexpected_error(error: Exception):
    # A bug: log it with its traceback, answer without details.
    log(logger, "unhandled_exception", logging.ERROR, error=type(error).__name__, exc_info=True)
    return api_error(500, "internal_error", "An unexpected error occurred.")
