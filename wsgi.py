"""WSGI entry point for gunicorn from a checkout (`gunicorn wsgi:app`); an installed service uses
`webhook_service.wsgi:app`, which this is."""

from webhook_service.wsgi import app

__all__ = ["app"]
