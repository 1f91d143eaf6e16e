"""SMS/MMS webhook intake and media service.

Entry points (`cli/`, `wsgi.py`, `gunicorn_config.py` with the web process's worker class,
`gunicorn_worker.py`) start from the composition root: `settings.py` loads the configuration,
`runtime.py` builds the long-lived objects, `app.py` the web app. The parts
they wire together: `intake/` (webhooks in), `providers/` (one adapter per provider), `media/`
(attachments and uploads), `api/` (read and media APIs), `worker/` (the download queue and its
consumers). Below them, shared by all: `config/`, `model/`, `database/`, `observability/`; and beside
the package, `storage/` (blob stores). docs/architecture.md draws the whole.
"""

__version__ = "0.1.0"
