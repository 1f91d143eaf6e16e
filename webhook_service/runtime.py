"""The composition root: every long-lived object one process needs (database, blob store, intake,
attachment pipeline, queue...), built once from validated settings and handed to the parts that use
them. The web app, the worker and the CLI each start from a Runtime; no part imports this module."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable
from datetime import timedelta
from functools import cached_property
from pathlib import Path

from redis.connection import parse_url as parse_redis_url

import storage
from storage import BlobStore, LocalBlobStore
from webhook_service.api.auth import ApiAuthenticator
from webhook_service.api.local_media import LOCAL_MEDIA_PREFIX
from webhook_service.config.connections import ConnectionDirectory
from webhook_service.config.cpus import available_cpus
from webhook_service.config.model import ConfigError, Settings
from webhook_service.config.problems import Places, numbered
from webhook_service.database.engine import Database
from webhook_service.database.leases import Lease
from webhook_service.database.limits import DatabaseLimits
from webhook_service.database.request_counts import request_counts
from webhook_service.delivery.endpoint_secrets import EndpointSecrets
from webhook_service.delivery.endpoints import EndpointStore
from webhook_service.delivery.engine import DeliveryEngine
from webhook_service.delivery.urls import EndpointUrls, delivery_rules
from webhook_service.intake.processing import Intake
from webhook_service.intake.quarantine import Quarantine, QuarantineBudget
from webhook_service.intake.spool import RequestSpool
from webhook_service.intake.spool_drainer import SpoolDrainer
from webhook_service.media.fetcher import Resolver
from webhook_service.media.links import MediaLinks
from webhook_service.media.pipeline import AttachmentPipeline
from webhook_service.media.uploads import MediaUploads
from webhook_service.media.validation import MediaPolicy
from webhook_service.network.targets import OutboundError
from webhook_service.observability import metrics
from webhook_service.observability.logs import log
from webhook_service.providers import ADAPTERS
from webhook_service.worker.queue import DELIVERY_SWEEP_TASK, SWEEP_LEASE_SECONDS, SWEEP_TASK, DownloadQueue

logger = logging.getLogger("webhook_service.runtime")


class Runtime:
    def __init__(self, settings: Settings, *, resolver: Resolver | None = None):
        """`resolver` resolves media hosts for downloads and endpoint hosts for deliveries (None: the
        system's; tests substitute one, as DNS is not theirs to run)."""
        self.settings = settings
        self.resolver = resolver
        self.db = Database(settings.effective_database_url, _database_limits(settings))
        self.db.group_commit.on_committed = metrics.observe_group_commit
        self.connections = ConnectionDirectory(settings.connections)
        # Checked now so that a bad media, storage or queue setting stops the service at start, not at
        # the first download.
        _check_redis_url(settings)
        self.media_policy = _media_policy(settings)
        self.blob_store = _blob_store(settings, self.secret_key)
        self.links = MediaLinks(self.blob_store, settings, self.secret_key)
        self.quarantine = Quarantine(self.db, QuarantineBudget(settings.quarantine_max_bytes))
        # Made lazily: nothing is written under data_dir until a request is spooled.
        self.spool = (
            RequestSpool(
                settings.spool_dir, max_bytes=settings.spool_max_bytes, max_body_bytes=settings.webhook_max_body_bytes
            )
            if settings.spool_max_bytes
            else None
        )
        self.intake = Intake(
            self.db,
            ADAPTERS,
            self.connections,
            self.quarantine,
            region=settings.phone_default_region,
            on_new_attachments=self.schedule_downloads,
            spool=self.spool,
        )
        self.uploads = MediaUploads(self.db, self.blob_store, self.links, self.media_policy)
        self.attachments = AttachmentPipeline(
            self.db,
            self.blob_store,
            self.connections,
            media=settings.media,
            policy=self.media_policy,
            credentials_for={name: adapter.media_credentials for name, adapter in ADAPTERS.items()},
            enqueue=lambda ids, eta: self.queue.enqueue(ids, eta=eta),
            work_dir=self.work_dir,
            resolver=resolver,
        )
        self.endpoint_urls = EndpointUrls(delivery_rules(settings.delivery), resolver)
        # A declared endpoint's URL that the rules refuse stops the service now, like any bad setting.
        _check_declared_endpoints(settings, self.endpoint_urls)
        endpoint_secrets = EndpointSecrets(self.secret_key)
        self.endpoints = EndpointStore(self.db, self.endpoint_urls, wake=self.wake_deliveries, secrets=endpoint_secrets)
        self.deliveries = DeliveryEngine(
            self.db,
            settings.delivery,
            secrets=endpoint_secrets,
            attachment_url=self.links.attachment_url,
            enqueue=lambda ids, eta: self.queue.enqueue_deliveries(ids, eta),
            resolver=resolver,
        )
        self._endpoints_prepared = False

    @cached_property
    def secret_key(self) -> bytes:
        """Signs local media URLs and stable upload links. Configured in production; in development
        generated once and kept under the data directory so URLs survive restarts."""
        if self.settings.secret_key:
            return self.settings.secret_key.encode()
        return kept_secret_key(self.settings.data_dir / "secret_key")

    @cached_property
    def api_auth(self) -> ApiAuthenticator:
        # Made on first use: it hashes a decoy password, which the worker never needs.
        return ApiAuthenticator(self.settings.api_users, self.settings.api_keys)

    @cached_property
    def queue(self) -> DownloadQueue:
        settings = self.settings
        return DownloadQueue(
            settings.queue,
            data_dir=settings.data_dir,
            redis_url=settings.redis_url,
            process=self.attachments.process,
            sweep=self.attachments.sweep,
            sweep_lease=Lease(self.db, SWEEP_TASK, SWEEP_LEASE_SECONDS),
            deliver=self.deliveries.drain,
            sweep_deliveries=self.sweep_deliveries,
        )

    @cached_property
    def spool_drainer(self) -> SpoolDrainer | None:
        """Stores what the spool kept once the database answers again (None without a spool). The web
        and worker processes start it (`start_spool_drainer`); tests call its `drain()`."""
        return SpoolDrainer(self.spool, self.intake) if self.spool else None

    def start_spool_drainer(self) -> None:
        if self.spool_drainer is not None:
            self.spool_drainer.start()

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
        except Exception as error:  # noqa: BLE001  # the queue is only a trigger; never fail the webhook over it
            metrics.ENQUEUE_FAILURES.inc(len(attachment_ids))
            log(logger, "enqueue_failed", logging.WARNING, attachments=len(attachment_ids), error=type(error).__name__)

    def wake_deliveries(self, endpoint_ids: list[str]) -> None:
        """Ask for delivery turns for these endpoints now. Only a trigger: the delivery sweep finds
        whatever a lost one leaves waiting."""
        try:
            self.queue.enqueue_deliveries(endpoint_ids)
        except Exception as error:  # noqa: BLE001  # the queue is only a trigger; never fail the caller over it
            log(logger, "enqueue_failed", logging.WARNING, endpoints=len(endpoint_ids), error=type(error).__name__)

    def sweep_deliveries(self) -> int:
        """The minute's delivery sweep, run by whichever worker takes its lease (as the attachments'
        sweep); first, until it has worked once in this process, the endpoints declared in the
        configuration are made to match it."""
        if not Lease(self.db, DELIVERY_SWEEP_TASK, SWEEP_LEASE_SECONDS).take():
            return 0
        self._prepare_endpoints()
        return self.deliveries.sweep()

    def catch_up_deliveries(self) -> int:
        """When a worker starts: every endpoint with work is woken, however recent (the feed watch takes
        over from there)."""
        self._prepare_endpoints()
        return self.deliveries.sweep(grace=timedelta(0))

    def _prepare_endpoints(self) -> None:
        """Once per process: the declared endpoints made to match the configuration, and the secrets
        still kept in plain text (from before they were sealed) sealed."""
        if not self._endpoints_prepared:
            self.endpoints.sync_declared(self.settings.delivery.endpoints)
            sealed = self.endpoints.seal_plain_secrets()
            if sealed:
                log(logger, "endpoint_secrets_sealed", endpoints=sealed)
            self._endpoints_prepared = True

    def close(self) -> None:
        drainer = self.__dict__.get("spool_drainer")  # made on first use
        if drainer is not None:
            drainer.stop()
        if "queue" in self.__dict__:  # made on first use
            self.queue.close()
        self.deliveries.close()
        request_counts(self.db).close()
        self.db.dispose()


def problems_found_at_start(settings: Settings, places: Places | None = None) -> list[str]:
    """What building the runtime would refuse in `settings` beyond the configuration's own checks, found
    without building it (nothing written, nothing connected to): for `check-config`, and `run` before it
    starts anything. `places`: where settings holds only some items of a list (see `numbered`)."""
    checks: list[Callable[[], object]] = [
        lambda: _check_redis_url(settings),
        lambda: _media_policy(settings),
        lambda: _check_declared_endpoints(settings, EndpointUrls(delivery_rules(settings.delivery), None), places),
    ]
    if settings.storage.backend != "local":  # the local store makes its directories as it is built
        checks.append(lambda: _blob_store(settings, secret_key=b""))
    problems = []
    for check in checks:
        try:
            check()
        except ConfigError as error:
            problems += error.problems
    return problems


def _check_redis_url(settings: Settings) -> None:
    """redis_url as redis-py will read it for the queue and the console's limits: what it cannot read
    (a scheme it does not connect to, a port that is not one, an option whose value it cannot parse) it
    refuses with a ValueError only as each process makes them. Its messages do not repeat the URL."""
    if settings.redis_url:
        try:
            parse_redis_url(settings.redis_url)
        except ValueError as error:
            raise ConfigError(f"redis_url: {error}") from None


def _check_declared_endpoints(settings: Settings, urls: EndpointUrls, places: Places | None = None) -> None:
    for index, declared in numbered(settings.delivery.endpoints, ("delivery", "endpoints"), places):
        try:
            urls.check_form(declared.url)
        except OutboundError as error:
            raise ConfigError(f"delivery.endpoints[{index}].url: {error.message}") from None


def _database_limits(settings: Settings) -> DatabaseLimits:
    database = settings.database
    return DatabaseLimits(
        connect_timeout=database.connect_timeout_seconds,
        statement_timeout=database.statement_timeout_seconds,
        pool_timeout=database.pool_timeout_seconds,
    )


def _media_policy(settings: Settings) -> MediaPolicy:
    media = settings.media
    try:
        return MediaPolicy(
            allowed_types=frozenset(media.allowed_types),
            max_bytes=media.max_bytes,
            max_image_pixels=media.max_image_pixels,
            jpeg_quality=media.jpeg_quality,
            max_concurrent_decodes=media.max_concurrent_image_decodes or available_cpus(),
        )
    except ValueError as error:
        raise ConfigError(f"media: {error}") from None


def _blob_store(settings: Settings, secret_key: bytes) -> BlobStore:
    """The blob store the configuration asks for. (The S3 and Azure classes load their SDKs on first use,
    so a service on the local store never imports boto3 or the Azure SDK.)"""
    config = settings.storage
    try:
        if config.backend == "s3" and config.s3 is not None:
            s3 = config.s3
            return storage.S3BlobStore(
                s3.bucket,
                region=s3.region,
                endpoint_url=s3.endpoint_url,
                access_key_id=s3.access_key_id,
                secret_access_key=s3.secret_access_key,
                prefix=s3.prefix,
            )
        if config.backend == "azure" and config.azure is not None:
            azure = config.azure
            return storage.AzureBlobStore(
                azure.container,
                connection_string=azure.connection_string,
                account_url=azure.account_url,
                account_name=azure.account_name,
                account_key=azure.account_key,
                prefix=azure.prefix,
            )
        return LocalBlobStore(settings.local_blob_dir, signing_key=secret_key, url_prefix=LOCAL_MEDIA_PREFIX)
    except ValueError as error:
        raise ConfigError(f"storage.{config.backend}: {error}") from None


def kept_secret_key(path: Path) -> bytes:
    """The key kept in `path`, made (once, whichever process comes first) when there is none."""
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48).encode()
    # Written whole under a name of this process's, then linked into place: every web worker of a new
    # data directory gets here at once, and one that opened the key file between another's create
    # and write read it empty (and refused to start).
    draft = path.with_name(f".secret_key.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(key)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(draft, path)
    except FileExistsError:  # another process won the race; use its key, complete by then
        return path.read_bytes().strip()
    finally:
        draft.unlink(missing_ok=True)
    return key
