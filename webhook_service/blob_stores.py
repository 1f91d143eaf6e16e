"""The blob store the configuration asks for."""
from __future__ import annotations

from storage import BlobStore

from webhook_service.config.model import Settings

# Local-store URLs are served by this service under this path (see media_serving.py).
LOCAL_MEDIA_PREFIX = "/media/"


def build_blob_store(settings: Settings, secret_key: bytes) -> BlobStore:
    storage = settings.storage
    if storage.backend == "s3":
        from storage import S3BlobStore

        s3 = storage.s3
        return S3BlobStore(s3.bucket, region=s3.region, endpoint_url=s3.endpoint_url,
                           access_key_id=s3.access_key_id, secret_access_key=s3.secret_access_key,
                           prefix=s3.prefix)
    if storage.backend == "azure":
        from storage import AzureBlobStore

        azure = storage.azure
        return AzureBlobStore(azure.container, connection_string=azure.connection_string,
                              account_url=azure.account_url, account_name=azure.account_name,
                              account_key=azure.account_key, prefix=azure.prefix)
    from storage import LocalBlobStore

    return LocalBlobStore(settings.local_blob_dir, signing_key=secret_key, url_prefix=LOCAL_MEDIA_PREFIX)
