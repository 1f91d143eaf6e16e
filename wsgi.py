"""WSGI entry point for gunicorn (`gunicorn wsgi:app`), configured from the environment."""
import sys

from webhook_service import create_app
from webhook_service.config import ConfigError

try:
    app = create_app()
except ConfigError as error:
    # One clear line instead of a traceback from every gunicorn worker.
    sys.stderr.write(f"configuration error: {error}\n")
    raise SystemExit(2)
