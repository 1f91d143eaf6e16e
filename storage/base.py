"""The contract every blob store keeps: the values it returns, the errors it raises, and the abstract
interface the web layer and the media pipeline program against."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, ClassVar, Literal

# Far beyond any sensible link lifetime; it only keeps expiry timestamps inside datetime's range.
MAX_URL_LIFETIME_SECONDS = 100 * 366 * 24 * 3600


class StorageError(Exception):
    """A blob store operation failed for a reason retrying will not fix by itself."""


class BlobNotFound(StorageError):
    """No object exists under the key."""


class StorageUnavailable(StorageError):
    """The backend could not be reached or asked us to back off (refused or reset connections, timeouts,
    5xx, throttling): the caller should retry later."""


@dataclass(frozen=True)
class BlobInfo:
    key: str
    size: int
    content_type: str
    metadata: dict[str, str] = field(default_factory=dict)
    content_disposition: str | None = None


@dataclass(frozen=True)
class SignedUrl:
    url: str
    # Timezone-aware UTC; the URL stops working at this instant.
    expires_at: datetime


def check_url_lifetime(expires_in: int) -> None:
    if isinstance(expires_in, bool) or not isinstance(expires_in, int):
        raise ValueError(f"expires_in must be an int number of seconds, not {expires_in!r}")
    if not 0 < expires_in <= MAX_URL_LIFETIME_SECONDS:
        raise ValueError(f"expires_in must be between 1 and {MAX_URL_LIFETIME_SECONDS} seconds")


class BlobStore(ABC):
    """Objects addressed by service-made keys (see `validate_key`), each stored with a content type,
    string metadata and an optional Content-Disposition.

    Metadata names come back normalized (lower case, "-" as "_"), the form every backend can keep; see
    `normalize_metadata`. Invalid keys, metadata or header values raise ValueError before any I/O.
    """

    backend: ClassVar[Literal["local", "s3", "azure"]]

    @abstractmethod
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
        """Store everything `source.read()` yields under `key`, replacing any object there.

        Atomic: readers see the previous object or the complete new one, never a part. When the source
        fails (its read() raises, or it yields a different number of bytes than a given `size`), the
        source's exception propagates unchanged and the key is left exactly as it was. The source is
        read in chunks, never whole, so memory use does not grow with the object's size.
        """

    def put_file(
        self,
        key: str,
        path: Path,
        *,
        content_type: str,
        metadata: Mapping[str, str] = {},
        content_disposition: str | None = None,
        consume: bool = False,
    ) -> BlobInfo:
        """Store the file at `path` under `key`, as put() does. With `consume`, the store may take the
        file over instead of copying it (the local store renames it into place); the caller must not
        use the path afterwards, whatever the outcome."""
        with open(path, "rb") as source:
            return self.put(
                key,
                source,
                content_type=content_type,
                size=os.fstat(source.fileno()).st_size,
                metadata=metadata,
                content_disposition=content_disposition,
            )

    @abstractmethod
    def open(self, key: str) -> BinaryIO:
        """A readable binary stream of the object, to be used as a context manager
        (`with store.open(key) as stream:`). BlobNotFound when the key holds nothing."""

    @abstractmethod
    def head(self, key: str) -> BlobInfo | None:
        """The object's size, content type, metadata and disposition; None when the key holds nothing."""

    @abstractmethod
    def delete(self, key: str) -> bool:
        """Remove the object; True if there was one. Deleting a missing key is not an error."""

    @abstractmethod
    def signed_url(
        self,
        key: str,
        *,
        expires_in: int,
        filename: str | None = None,
        content_type: str | None = None,
        disposition: str = "inline",
    ) -> SignedUrl:
        """A URL anyone can GET until `expires_at`, answered with `content_type` (the stored type when
        None) and the Content-Disposition `content_disposition(disposition, filename)` builds.
        A backend with a shorter maximum lifetime clamps `expires_in`; `expires_at` tells the truth."""

    @abstractmethod
    def create_if_missing(self) -> bool:
        """Create where the objects are kept (the S3 bucket, the Azure container) unless it exists; True
        when this call created it. Idempotent. Made for deployment (`webhook-service storage init`): the
        service itself never creates it, and check() only reads."""

    @abstractmethod
    def check(self) -> None:
        """Readiness probe: StorageUnavailable when the backend cannot be reached, StorageError when it
        answers but is unusable (a missing bucket or container, refused credentials)."""
