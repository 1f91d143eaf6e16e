"""The WSGI application for gunicorn (`gunicorn webhook_service.wsgi:app`), configured from the
environment like every other entry point."""

import gc
import sys

from webhook_service.app import create_app
from webhook_service.config.model import ConfigError
from webhook_service.runtime import Runtime
from webhook_service.settings import load_settings

# gunicorn halts when a worker exits with this code ("App failed to load."); with any other, its master
# boots a new worker after each, forever, while holding the port: connections wait with no worker to
# answer them, and a process manager sees a server that runs.
GUNICORN_APP_LOAD_ERROR = 4

try:
    runtime = Runtime(load_settings())
    app = create_app(runtime=runtime)
except ConfigError as error:
    # One clear line instead of a traceback from every gunicorn worker.
    sys.stderr.write(f"configuration error: {error}\n")
    raise SystemExit(GUNICORN_APP_LOAD_ERROR) from None

# Each gunicorn worker loads this module after it is forked (no preload), so the thread is its own. The
# spool's drain lock lets one process at a time drain.
runtime.start_spool_drainer()

# Everything loaded so far (modules, the app, the runtime) lives as long as the process: moved out of the
# collector's generations, it is no longer scanned on every full collection while requests are served.
gc.collect()
gc.freeze()
