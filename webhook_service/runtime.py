"""The long-lived objects one process needs (database, connections, blob store, queue), built once from
validated settings and shared by the web app, the worker and the CLI."""
from __future__ import annotations

import logging
import os
import secrets
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from flask import current_app

from .config import ConfigError, Settings
from .connections import ConnectionDirectory
from .db import Database
from .logs import log
from .quarantine_budget import QuarantineBudget

if TYPE_CHECKING:
    from storage import BlobStore

    from .api_auth import ApiAuthenticator
    from .media.fetcher import Resolver
    from .media.validation import MediaPolicy
    from .tasks import DownloadQueue

logger = logging.getLogger("webhook_service.runtime")
EXTENSION_KEY = "webhook_service"


class Runtime:
    def __init__(self, settings: Settings, *, resolver: "Resolver | None" = None):
        self.settings = settings
        self.db = Database(settings.effective_database_url)
        self.connections = ConnectionDirectory(settings.connections)
        # Host name resolution for media downloads; tests substitute one (DNS is not theirs to run).
        self.resolver = resolver
        # Built now so that a bad media or storage setting stops the service at start, not at the
        # first download.
        self.media_policy = _media_policy(settings)
        self.blob_store = _blob_store(settings, self.secret_key)
        self.quarantine_budget = QuarantineBudget(settings.quarantine_max_bytes)

    @cached_property
    def secret_key(self) -> bytes:
        """Signs local media URLs. Configured in production; in development generated once and kept
        under the data directory so URLs survive restarts."""
        if self.settings.secret_key:
            return self.settings.secret_key.encode()
        path = self.settings.data_dir / "secret_key"
        try:
            return path.read_bytes().strip()
        except FileNotFoundError:
            pass
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48).encode()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process won the race; use its key
            return path.read_bytes().strip()
        with os.fdopen(fd, "wb") as handle:
            handle.write(key)
        return key

    @cached_property
    def api_auth(self) -> "ApiAuthenticator":
        from .api_auth import ApiAuthenticator

        return ApiAuthenticator(self.settings)

    @cached_property
    def queue(self) -> "DownloadQueue":
        from .tasks import DownloadQueue

        return DownloadQueue(self)

    @property
    def work_dir(self) -> Path:
        """Scratch space for downloads and uploads in progress (same filesystem as the local store, so
        finished files can be renamed into place)."""
        path = (self.settings.data_dir / "tmp").resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path

    def schedule_downloads(self, attachment_ids: list[str]) -> None:
        """Wake the workers for new attachments. The database already records them as pending, so a
        lost enqueue only delays them until the next sweep."""
        try:
            self.queue.enqueue(attachment_ids)
        except Exception as error:  # the queue is only a trigger; never fail the webhook over it
            log(logger, "enqueue_failed", logging.WARNING, attachments=len(attachment_ids),
                error=type(error).__name__)

    def close(self) -> None:
        if "queue" in self.__dict__:  # made on first use
            self.queue.close()
        self.db.dispose()


def _media_policy(settings: Settings) -> "MediaPolicy":
    from .media.validation import MediaPolicy

    media = settings.media
    try:
        return MediaPolicy(allowed_types=frozenset(media.allowed_types), max_bytes=media.max_bytes,
                           max_image_pixels=media.max_image_pixels, jpeg_quality=media.jpeg_quality,
                           max_concurrent_decodes=media.max_concurrent_image_decodes or os.cpu_count() or 1)
    except ValueError as error:
        raise ConfigError(f"media: {error}") from None


def _blob_store(settings: Settings, secret_key: bytes) -> "BlobStore":
    from .blob_stores import build_blob_store

    try:
        return build_blob_store(settings, secret_key)
    except ValueError as error:
        raise ConfigError(f"storage.{settings.storage.backend}: {error}") from None


def current_runtime() -> Runtime:
    return current_app.extensions[EXTENSION_KEY]


__all__ = ["ConfigError", "Runtime", "current_runtime"]
