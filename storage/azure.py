"""Blob store on Azure Blob Storage (Azurite in the tests).

The container is not created implicitly: `create_if_missing()` does that (deployment or tests), while
`check()` only reads, so a readiness probe never creates resources.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO, cast

from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    IncompleteReadError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import (
    BlobSasPermissions,
    BlobServiceClient,
    ContentSettings,
    ExponentialRetry,
    UserDelegationKey,
    generate_blob_sas,
)

from .base import BlobInfo, BlobNotFound, BlobStore, SignedUrl, StorageError, StorageUnavailable, check_url_lifetime
from .headers import check_header_value, normalize_metadata
from .headers import content_disposition as build_content_disposition
from .keys import normalize_prefix, validate_key
from .streams import SourceReader, translated_stream

# A user delegation key, and so any SAS signed with it, lives at most 7 days.
USER_DELEGATION_MAX_SECONDS = 7 * 24 * 3600
# Asked for a little less than the maximum, so a clock slightly ahead of Azure's is not refused.
_CLOCK_SKEW = timedelta(minutes=5)
_MIB = 1024 * 1024
# Uploads go as 4 MiB blocks committed at the end (a block list commit is atomic, and uncommitted
# blocks are never visible); downloads come in 4 MiB ranges. Either way memory holds one block.
_TRANSFER_SIZES = {
    "max_single_put_size": 4 * _MIB,
    "max_block_size": 4 * _MIB,
    "max_single_get_size": 4 * _MIB,
    "max_chunk_get_size": 4 * _MIB,
}
_DEFAULT_CONTENT_TYPE = "application/octet-stream"


class AzureBlobStore(BlobStore):
    """Objects in `container` under `prefix`.

    Credentials: a connection string; or `account_url` with `account_key` (`account_name` defaults to
    the one in the URL); or `account_url` with a token `credential` (azure-identity's
    DefaultAzureCredential when none is given). Signed URLs are read-only SAS: signed with the account
    key when there is one, otherwise with a user delegation key (capped at 7 days).
    """

    backend = "azure"

    def __init__(
        self,
        container: str,
        *,
        connection_string: str | None = None,
        account_url: str | None = None,
        account_name: str | None = None,
        account_key: str | None = None,
        prefix: str = "",
        credential: Any = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_attempts: int = 3,
    ):
        options: dict[str, Any] = {
            "connection_timeout": connect_timeout,
            "read_timeout": read_timeout,
            # The SDK's default waits 15 s and more between attempts: too long for a webhook worker or a
            # readiness probe. max_attempts counts the first try, as botocore's setting does.
            "retry_policy": ExponentialRetry(
                initial_backoff=1, increment_base=2, retry_total=max_attempts - 1, random_jitter_range=1
            ),
            **_TRANSFER_SIZES,
        }
        if connection_string:
            service = BlobServiceClient.from_connection_string(connection_string, **options)
        elif account_url:
            if account_key:
                credential = {"account_name": account_name, "account_key": account_key} if account_name else account_key
            elif credential is None:
                credential = _default_token_credential()
            service = BlobServiceClient(account_url, credential=credential, **options)
        else:
            raise ValueError("AzureBlobStore needs connection_string or account_url")
        self.container = container
        self._prefix = normalize_prefix(prefix)
        self._service = service
        self._container = service.get_container_client(container)
        self._account_key: str | None = getattr(service.credential, "account_key", None)
        # SAS over plain http only where the account itself is plain http (the emulator).
        self._sas_protocol = "https" if service.url.startswith("https:") else "https,http"
        self._delegation_lock = threading.Lock()
        self._cached_delegation_key: tuple[UserDelegationKey, datetime] | None = None

    def create_if_missing(self) -> bool:
        try:
            with _azure_errors(None):
                self._container.create_container()
        except StorageError as error:
            if isinstance(error.__cause__, ResourceExistsError):
                return False
            raise
        return True

    def put(
        self,
        key: str,
        source: BinaryIO,
        *,
        content_type: str,
        size: int | None = None,
        metadata: Mapping[str, str] = {},
        content_disposition: str | None = None,
    ) -> BlobInfo:
        name = self._name(key)
        settings = ContentSettings(
            content_type=check_header_value("content_type", content_type),
            content_disposition=(
                None if content_disposition is None else check_header_value("content_disposition", content_disposition)
            ),
        )
        normalized_metadata = normalize_metadata(metadata)
        reader = SourceReader(source, size)
        try:
            # No length: the SDK then reads the stream block by block (with a length it would read
            # that many bytes at once) and our reader sees the end, so it can check a declared size.
            stream = cast(BinaryIO, reader)  # the SDK only calls read() on it
            self._container.upload_blob(
                name, stream, overwrite=True, content_settings=settings, metadata=normalized_metadata, max_concurrency=1
            )
        except Exception as error:
            reader.reraise_source_failure()
            if not isinstance(error, AzureError):
                raise
            raise _translate(error, key) from error
        return BlobInfo(
            key=key,
            size=reader.bytes_read,
            content_type=content_type,
            metadata=normalized_metadata,
            content_disposition=content_disposition,
        )

    def open(self, key: str) -> BinaryIO:
        name = self._name(key)
        with _azure_errors(key):
            # Later ranges are fetched with the first one's ETag, so a concurrent overwrite makes the
            # read fail instead of mixing two versions.
            downloader = self._container.download_blob(name)
        return translated_stream(
            downloader, backend_errors=(AzureError,), translate=lambda error: _translate(error, key)
        )

    def head(self, key: str) -> BlobInfo | None:
        name = self._name(key)
        try:
            with _azure_errors(key):
                properties = self._container.get_blob_client(name).get_blob_properties()
        except BlobNotFound:
            return None
        settings = properties.content_settings
        return BlobInfo(
            key=key,
            size=properties.size,
            content_type=settings.content_type or _DEFAULT_CONTENT_TYPE,
            metadata=dict(properties.metadata or {}),
            content_disposition=settings.content_disposition,
        )

    def delete(self, key: str) -> bool:
        name = self._name(key)
        try:
            with _azure_errors(key):
                self._container.delete_blob(name)
        except BlobNotFound:
            return False
        return True

    def signed_url(
        self,
        key: str,
        *,
        expires_in: int,
        filename: str | None = None,
        content_type: str | None = None,
        disposition: str = "inline",
    ) -> SignedUrl:
        name = self._name(key)
        check_url_lifetime(expires_in)
        response_disposition = build_content_disposition(disposition, filename)
        response_type = check_header_value("content_type", content_type) if content_type is not None else None
        # Whole seconds: the SAS expiry is written without fractions.
        now = datetime.now(UTC).replace(microsecond=0)
        expires_at = now + timedelta(seconds=expires_in)
        delegation_key = None  # signed with the account key when there is one
        if not self._account_key:
            delegation_key, key_expires_at = self._user_delegation_key(
                min(expires_at, now + timedelta(seconds=USER_DELEGATION_MAX_SECONDS) - _CLOCK_SKEW)
            )
            expires_at = min(expires_at, key_expires_at)
        sas = generate_blob_sas(
            str(self._service.account_name),
            self.container,
            name,
            account_key=self._account_key or None,
            user_delegation_key=delegation_key,
            permission=BlobSasPermissions(read=True),
            expiry=expires_at,
            protocol=self._sas_protocol,
            content_disposition=response_disposition,
            content_type=response_type,
        )
        return SignedUrl(url=f"{self._container.get_blob_client(name).url}?{sas}", expires_at=expires_at)

    def check(self) -> None:
        try:
            with _azure_errors(None):
                self._container.get_container_properties()
        except StorageError as error:
            if isinstance(error.__cause__, ResourceNotFoundError):
                raise StorageError(
                    f"Azure container {self.container!r} does not exist (create_if_missing() creates it)"
                ) from error.__cause__
            raise

    def _user_delegation_key(self, needed_until: datetime) -> tuple[UserDelegationKey, datetime]:
        """A user delegation key valid at least until `needed_until`, reused across URLs (asking Azure
        for one per URL would add a round trip to every signed link)."""
        with self._delegation_lock:
            if self._cached_delegation_key is None or self._cached_delegation_key[1] < needed_until:
                now = datetime.now(UTC).replace(microsecond=0)
                key_expires_at = now + timedelta(seconds=USER_DELEGATION_MAX_SECONDS) - _CLOCK_SKEW
                with _azure_errors(None):
                    delegation_key = self._service.get_user_delegation_key(
                        key_start_time=now - _CLOCK_SKEW, key_expiry_time=key_expires_at
                    )
                self._cached_delegation_key = (delegation_key, key_expires_at)
            return self._cached_delegation_key

    def _name(self, key: str) -> str:
        return self._prefix + validate_key(key)


def _default_token_credential() -> Any:
    try:
        from azure.identity import DefaultAzureCredential
    except ImportError:
        raise ValueError(
            "AzureBlobStore without account_key or connection_string needs a token credential: "
            "pass credential=..., or install azure-identity for DefaultAzureCredential"
        ) from None
    return DefaultAzureCredential()


@contextmanager
def _azure_errors(key: str | None) -> Iterator[None]:
    try:
        yield
    except AzureError as error:
        raise _translate(error, key) from error


def _translate(error: Exception, key: str | None) -> StorageError:
    if isinstance(error, ResourceNotFoundError) and getattr(error, "error_code", None) != "ContainerNotFound":
        return BlobNotFound(key)
    # Refused, reset or timed-out connections, and bodies cut off mid-read.
    if isinstance(error, (ServiceRequestError, ServiceResponseError, IncompleteReadError)):
        return StorageUnavailable(f"Azure Blob Storage is unreachable: {type(error).__name__}")
    if isinstance(error, HttpResponseError):
        if error.status_code is None and isinstance(error.__cause__, AzureError):
            # The downloader wraps the failure of its last attempt (a broken connection) this way.
            return _translate(error.__cause__, key)
        status = error.status_code or 0
        code = getattr(error, "error_code", None)
        if status >= 500 or status == 429:
            return StorageUnavailable(f"Azure Blob Storage asked to retry later: {status} {code}")
        return StorageError(f"Azure Blob Storage refused the request: {status} {code}")
    return StorageError(f"Azure Blob Storage request failed: {error}")
