"""Blob storage for media: local disk, Amazon S3 or Azure Blob Storage behind one interface.

No Flask here and nothing from webhook_service: the web layer and the workers build a store from their
settings and use it through `BlobStore`. The backend classes load lazily, so importing this package
does not import boto3 or the Azure SDK.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .base import BlobInfo, BlobNotFound, BlobStore, SignedUrl, StorageError, StorageUnavailable
from .headers import content_disposition, disposition_for
from .keys import validate_key

if TYPE_CHECKING:
    from .azure import AzureBlobStore
    from .local import LocalBlobStore
    from .s3 import S3BlobStore

_BACKEND_MODULES = {"LocalBlobStore": ".local", "S3BlobStore": ".s3", "AzureBlobStore": ".azure"}

__all__ = [
    "AzureBlobStore",
    "BlobInfo",
    "BlobNotFound",
    "BlobStore",
    "LocalBlobStore",
    "S3BlobStore",
    "SignedUrl",
    "StorageError",
    "StorageUnavailable",
    "content_disposition",
    "disposition_for",
    "validate_key",
]


def __getattr__(name: str) -> Any:
    if name in _BACKEND_MODULES:
        return getattr(import_module(_BACKEND_MODULES[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
