"""SMS/MMS webhook intake and media service."""

__all__ = ["create_app"]


def __getattr__(name: str):
    # Imported on first use, so the commands that never serve HTTP (the worker supervisor, check-config)
    # do not load Flask, SQLAlchemy and every provider first.
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
