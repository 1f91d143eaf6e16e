"""Adapters between the caller's streams and the backends' streams."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import BinaryIO, Protocol

from .base import StorageError

# Large enough for few system calls per object, small enough that memory does not depend on object size.
CHUNK_SIZE = 1024 * 1024


class SourceSizeMismatch(ValueError):
    """The source yielded a different number of bytes than the `size` the caller declared."""


class SourceReader:
    """The caller's source as a store reads it.

    Counts the bytes, holds the source to a declared size, and remembers a failure that came from the
    source itself. Backends and their SDKs wrap or retry whatever a read raises; the remembered failure
    lets a store re-raise the caller's own exception instead of reporting a storage outage.
    """

    def __init__(self, source: BinaryIO, declared_size: int | None):
        if declared_size is not None and declared_size < 0:
            raise ValueError(f"size must not be negative: {declared_size}")
        self._source = source
        self._declared_size = declared_size
        self.bytes_read = 0
        self.failure: Exception | None = None

    def read(self, size: int = -1) -> bytes:
        """Full reads: `size` bytes unless the source ends first. SDKs take a short read for the end of
        the stream (s3transfer chooses between one PUT and a multipart upload that way), while network
        sources often return less than asked. With no size, the rest is read chunk by chunk; the
        uploaders only ask for that once the source is exhausted."""
        wanted = None if size is None or size < 0 else size
        chunks: list[bytes] = []
        received = 0
        while wanted is None or received < wanted:
            chunk = self._read_chunk(CHUNK_SIZE if wanted is None else wanted - received)
            if not chunk:
                self._check_complete()
                break
            chunks.append(chunk)
            received += len(chunk)
        return b"".join(chunks)

    def _read_chunk(self, size: int) -> bytes:
        try:
            chunk = self._source.read(size)
        except Exception as error:
            self.failure = error
            raise
        if not isinstance(chunk, bytes):
            self._fail(TypeError(f"source.read() must return bytes, not {type(chunk).__name__}"))
        self.bytes_read += len(chunk)
        if self._declared_size is not None and self.bytes_read > self._declared_size:
            self._fail(SourceSizeMismatch(f"source yields more than the declared {self._declared_size} bytes"))
        return chunk

    def _check_complete(self) -> None:
        if self._declared_size is not None and self.bytes_read != self._declared_size:
            self._fail(
                SourceSizeMismatch(
                    f"source ended after {self.bytes_read} bytes, declared size is {self._declared_size}"
                )
            )

    def reraise_source_failure(self) -> None:
        """Call in an except block around a backend write: raises the source's own exception, if the
        write failed because of the source."""
        if self.failure is not None:
            raise self.failure

    def _fail(self, error: Exception) -> None:
        self.failure = error
        raise error


class _Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


class _TranslatingRawReader(io.RawIOBase):
    """A backend's response body as a standard binary stream whose failures while reading arrive as
    StorageError subclasses, like the failures of every other store call."""

    def __init__(
        self,
        body: _Readable,
        *,
        backend_errors: tuple[type[Exception], ...],
        translate: Callable[[Exception], StorageError],
        close_body: Callable[[], None] | None,
    ):
        super().__init__()
        self._body = body
        self._backend_errors = backend_errors
        self._translate = translate
        self._close_body = close_body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        try:
            chunk = self._body.read(len(buffer))
        except self._backend_errors as error:
            raise self._translate(error) from error
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def close(self) -> None:
        if not self.closed:
            try:
                if self._close_body is not None:
                    self._close_body()
            finally:
                super().close()


def translated_stream(
    body: _Readable,
    *,
    backend_errors: tuple[type[Exception], ...],
    translate: Callable[[Exception], StorageError],
    close_body: Callable[[], None] | None = None,
) -> BinaryIO:
    raw = _TranslatingRawReader(body, backend_errors=backend_errors, translate=translate, close_body=close_body)
    return io.BufferedReader(raw, buffer_size=CHUNK_SIZE)
