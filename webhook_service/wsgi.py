"""The WSGI application for gunicorn (`gunicorn webhook_service.wsgi:app`), configured from the
environment like every other entry point."""

import gc
import sys

from webhook_service.app import create_app
from webhook_service.config.model import ConfigError

# gunicorn halts when a worker exits with this code ("App failed to load."); with any other, its master
# boots a new worker after each, forever, while holding the port: connections wait with no worker to
# answer them, and a process manager sees a server that runs.
GUNICORN_APP_LOAD_ERROR = 4

try:
    app = create_app()
except ConfigError as error:
    # One clear line instead of a traceback from every gunicorn worker.
    sys.stderr.write(f"configuration error: {error}\n")
    raise SystemExit(GUNICORN_APP_LOAD_ERROR) from None

# Everything loaded so far (modules, the app, the runtime) lives as long as the process: moved out of the
# collector's generations, it is no longer scanned on every full collection while requests are served.
gc.collect()
gc.freeze()
