"""Blob store on Amazon S3 or an S3-compatible service (MinIO, moto's server in the tests)."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, IncompleteReadError
from botocore.exceptions import ConnectionError as BotoConnectionError

from .base import BlobInfo, BlobNotFound, BlobStore, SignedUrl, StorageError, StorageUnavailable, check_url_lifetime
from .headers import check_header_value, normalize_metadata
from .headers import content_disposition as build_content_disposition
from .keys import normalize_prefix, validate_key
from .streams import SourceReader, translated_stream

# SigV4 presigned URLs cannot live longer than this.
S3_MAX_PRESIGN_SECONDS = 7 * 24 * 3600
_MIB = 1024 * 1024
# Objects up to 8 MiB (all media here) go up in one PUT, larger ones in 8 MiB parts; either way S3
# shows the object only once it is complete. s3transfer buffers one part of a stream that cannot seek,
# so memory stays at one part whatever the object size; no extra threads, callers bring their own.
_TRANSFER = TransferConfig(multipart_threshold=8 * _MIB, multipart_chunksize=8 * _MIB, use_threads=False)
_BACKEND_ERRORS = (BotoCoreError, ClientError)
_NOT_FOUND_CODES = {"NoSuchKey", "NotFound", "404"}
_BACK_OFF_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "ServiceUnavailable",
    "InternalError",
}
# A boto3 session loads the service models and endpoint data; clients made from one shared session
# are then cheap. Sessions are not thread-safe, so clients are made under a lock.
_session_lock = threading.Lock()


class S3BlobStore(BlobStore):
    """Objects in `bucket` under `prefix`. Pass `client` to use a ready boto3 S3 client; the region,
    endpoint, credentials, timeouts and retry settings here then do not apply. Without credentials,
    boto3's usual chain (environment, instance role...) is used."""

    backend = "s3"

    def __init__(
        self,
        bucket: str,
        *,
        region: str = "us-east-1",
        endpoint_url: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        prefix: str = "",
        client: Any = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_attempts: int = 3,
    ):
        self.bucket = bucket
        self._prefix = normalize_prefix(prefix)
        if client is None:
            config = Config(
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                retries={"mode": "standard", "max_attempts": max_attempts},
                # Presigned URLs must be SigV4 (X-Amz-Expires, the 7-day cap); S3-compatible servers
                # rarely serve buckets as host names, so address them by path.
                signature_version="s3v4",
                s3={"addressing_style": "path"} if endpoint_url else None,
            )
            try:
                with _session_lock:
                    client = _shared_session().client(
                        "s3",
                        region_name=region,
                        endpoint_url=endpoint_url,
                        aws_access_key_id=access_key_id,
                        aws_secret_access_key=secret_access_key,
                        config=config,
                    )
            except BotoCoreError as error:
                # Making a client sends nothing: what botocore refuses here is the arguments or the
                # environment's AWS settings (a key id without its secret, an AWS_PROFILE that is not
                # there), a ValueError as its invalid endpoint or region already is.
                raise ValueError(str(error)) from None
        self.client = client

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
        normalized_metadata = normalize_metadata(metadata)
        extra_args: dict[str, object] = {
            "ContentType": check_header_value("content_type", content_type),
            "Metadata": normalized_metadata,
        }
        if content_disposition is not None:
            extra_args["ContentDisposition"] = check_header_value("content_disposition", content_disposition)
        reader = SourceReader(source, size)
        try:
            self.client.upload_fileobj(reader, self.bucket, name, ExtraArgs=extra_args, Config=_TRANSFER)
        except Exception as error:
            reader.reraise_source_failure()
            if not isinstance(error, _BACKEND_ERRORS):
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
        with _s3_errors(key):
            body = self.client.get_object(Bucket=self.bucket, Key=name)["Body"]
        return translated_stream(
            body, backend_errors=_BACKEND_ERRORS, translate=lambda error: _translate(error, key), close_body=body.close
        )

    def head(self, key: str) -> BlobInfo | None:
        name = self._name(key)
        try:
            with _s3_errors(key):
                response = self.client.head_object(Bucket=self.bucket, Key=name)
        except BlobNotFound:
            return None
        return BlobInfo(
            key=key,
            size=response["ContentLength"],
            content_type=response.get("ContentType", "binary/octet-stream"),
            metadata=response.get("Metadata", {}),
            content_disposition=response.get("ContentDisposition"),
        )

    def delete(self, key: str) -> bool:
        # S3 answers a delete the same whether or not the key existed; ask first to report which.
        existed = self.head(key) is not None
        with _s3_errors(key):
            self.client.delete_object(Bucket=self.bucket, Key=self._name(key))
        return existed

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
        lifetime = min(expires_in, S3_MAX_PRESIGN_SECONDS)
        params = {
            "Bucket": self.bucket,
            "Key": name,
            "ResponseContentDisposition": build_content_disposition(disposition, filename),
        }
        if content_type is not None:
            params["ResponseContentType"] = check_header_value("content_type", content_type)
        # Taken before signing, and whole seconds like X-Amz-Date, so the URL never dies before this.
        signed_at = datetime.now(UTC).replace(microsecond=0)
        with _s3_errors(key):
            url = self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=lifetime)
        return SignedUrl(url=url, expires_at=signed_at + timedelta(seconds=lifetime))

    def create_if_missing(self) -> bool:
        try:
            with _s3_errors(None):
                self.client.head_bucket(Bucket=self.bucket)
            return False
        except BlobNotFound:
            pass
        region = self.client.meta.region_name
        # us-east-1 is the one region S3 refuses a location constraint for.
        location = (
            {} if region in (None, "us-east-1") else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        )
        try:
            with _s3_errors(None):
                self.client.create_bucket(Bucket=self.bucket, **location)
        except StorageError as error:
            code = _error_code(error.__cause__)
            if code == "BucketAlreadyOwnedByYou":
                return False  # made meanwhile, by another run of this
            if code == "BucketAlreadyExists":
                raise StorageError(
                    f"S3 bucket {self.bucket!r} belongs to another account (bucket names are global): choose another name"
                ) from error.__cause__
            raise
        return True

    def check(self) -> None:
        try:
            with _s3_errors(None):
                self.client.head_bucket(Bucket=self.bucket)
        except BlobNotFound as error:
            raise StorageError(f"S3 bucket {self.bucket!r} does not exist") from error.__cause__

    def _name(self, key: str) -> str:
        return self._prefix + validate_key(key)


@functools.cache
def _shared_session() -> boto3.session.Session:
    return boto3.session.Session()


@contextmanager
def _s3_errors(key: str | None) -> Iterator[None]:
    try:
        yield
    except _BACKEND_ERRORS as error:
        raise _translate(error, key) from error


def _error_code(error: BaseException | None) -> str:
    return str(error.response.get("Error", {}).get("Code", "")) if isinstance(error, ClientError) else ""


def _translate(error: Exception, key: str | None) -> StorageError:
    if isinstance(error, ClientError):
        code = _error_code(error)
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in _NOT_FOUND_CODES:
            return BlobNotFound(key)
        if status >= 500 or status == 429 or code in _BACK_OFF_CODES:
            return StorageUnavailable(f"S3 asked to retry later: {code or status}")
        return StorageError(f"S3 refused the request: {code or status}")
    # Refused, reset or timed-out connections, and bodies cut off mid-read.
    if isinstance(error, (BotoConnectionError, HTTPClientError, IncompleteReadError)):
        return StorageUnavailable(f"S3 is unreachable: {error}")
    return StorageError(f"S3 request failed: {error}")
