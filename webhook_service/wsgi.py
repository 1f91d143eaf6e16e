"""The WSGI application for gunicorn (`gunicorn webhook_service.wsgi:app`), configured from the
environment like every other entry point."""

import gc

from webhook_service.app import create_app
from webhook_service.cli.failures import exit_on_operator_failure
from webhook_service.runtime import Runtime
from webhook_service.settings import load_settings

# gunicorn halts when a worker exits with this code ("App failed to load."); with any other, its master
# boots a new worker after each, forever, while holding the port: connections wait with no worker to
# answer them, and a process manager sees a server that runs.
GUNICORN_APP_LOAD_ERROR = 4

try:
    runtime = Runtime(load_settings())
    app = create_app(runtime=runtime)
except Exception as error:
    # A configuration, a database or a directory the app cannot be built with: one clear line, as the
    # command line says it, instead of a traceback from every gunicorn worker. A bug keeps its traceback.
    exit_on_operator_failure(error, GUNICORN_APP_LOAD_ERROR)
    raise

# Each gunicorn worker loads this module after it is forked (no preload), so the thread is its own. The
# spool's drain lock lets one process at a time drain.
runtime.start_spool_drainer()

# Everything loaded so far (modules, the app, the runtime) lives as long as the process: moved out of the
# collector's generations, it is no longer scanned on every full collection while requests are served.
gc.collect()
gc.freeze()
