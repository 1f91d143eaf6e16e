"""Blob store on a local (or mounted) file system, the embedded default.

Layout under `root`: objects/<key> holds the bytes, meta/<key>.json the content type, metadata,
disposition and size, tmp/ the writes in progress (on the same file system, so finishing a write is an
atomic rename). Signed URLs point back at this service, which serves them after `verify_signed_request`.
"""

from __future__ import annotations

import errno
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote, urlencode

from .base import BlobInfo, BlobNotFound, BlobStore, SignedUrl, StorageError, StorageUnavailable, check_url_lifetime
from .headers import DISPOSITIONS, check_header_value, normalize_metadata, sanitize_filename
from .headers import content_disposition as build_content_disposition
from .keys import validate_key
from .signing import MIN_KEY_BYTES, UrlSigner
from .streams import CHUNK_SIZE, SourceReader

# Bound into every signature so a MAC made with the same secret for another purpose can never pass here.
_SIGNATURE_PURPOSE = "storage.local.signed-url/v1"
_EXPIRES = re.compile(r"[1-9][0-9]{0,10}")  # canonical: no sign, no leading zeros
# delete() removes emptied directories, so a put can lose its freshly made directory to a concurrent
# delete between mkdir and rename; it simply makes it again.
_MOVE_ATTEMPTS = 3
# For an object without a sidecar, which only a put racing a delete of the same key can leave.
_DEFAULT_CONTENT_TYPE = "application/octet-stream"


@dataclass(frozen=True)
class SignedRequest:
    """What a verified signed URL asks for: the object and the response overrides that were signed."""

    key: str
    expires_at: datetime
    disposition: str
    filename: str | None
    content_type: str | None

    @property
    def content_disposition(self) -> str:
        return build_content_disposition(self.disposition, self.filename)


class LocalBlobStore(BlobStore):
    backend = "local"

    def __init__(self, root: Path, *, signing_key: bytes, url_prefix: str = "/media/"):
        if not isinstance(signing_key, bytes) or len(signing_key) < MIN_KEY_BYTES:
            raise ValueError(f"signing_key must be at least {MIN_KEY_BYTES} random bytes")
        if not (url_prefix.startswith("/") and url_prefix.endswith("/")):
            raise ValueError(f"url_prefix must start and end with '/': {url_prefix!r}")
        self.root = Path(root)
        self.url_prefix = url_prefix
        self._signer = UrlSigner(signing_key, _SIGNATURE_PURPOSE)
        self._objects = self.root / "objects"
        self._meta = self.root / "meta"
        self._tmp = self.root / "tmp"
        for directory in (self._objects, self._meta, self._tmp):
            directory.mkdir(parents=True, exist_ok=True)

    # Objects ---------------------------------------------------------------------------------------
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
        object_path, meta_path = self._object_path(key), self._meta_path(key)
        check_header_value("content_type", content_type)
        if content_disposition is not None:
            check_header_value("content_disposition", content_disposition)
        normalized_metadata = normalize_metadata(metadata)
        reader = SourceReader(source, size)
        staged: list[Path] = []
        try:
            object_temp = self._stage(staged, lambda out: _copy(reader, out))
            info = BlobInfo(
                key=key,
                size=reader.bytes_read,
                content_type=content_type,
                metadata=normalized_metadata,
                content_disposition=content_disposition,
            )
            meta_temp = self._stage(staged, lambda out: out.write(_sidecar_json(info)))
            # Sidecar first, object last: whoever finds the object also finds its metadata.
            changed = _move_into_place(meta_temp, meta_path)
            staged.remove(meta_temp)
            changed += _move_into_place(object_temp, object_path)
            staged.remove(object_temp)
            _sync_directories(changed)
        except OSError as error:
            reader.reraise_source_failure()
            raise StorageUnavailable(f"cannot write {key!r} under {self.root}: {error}") from error
        finally:
            for path in staged:
                path.unlink(missing_ok=True)
        return info

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
        """With `consume`, the file is renamed into place (no second copy of the bytes) when it lives
        on the store's filesystem, which the service's scratch directory does."""
        if not consume:
            return super().put_file(
                key, path, content_type=content_type, metadata=metadata, content_disposition=content_disposition
            )
        object_path, meta_path = self._object_path(key), self._meta_path(key)
        check_header_value("content_type", content_type)
        if content_disposition is not None:
            check_header_value("content_disposition", content_disposition)
        info = BlobInfo(
            key=key,
            size=Path(path).stat().st_size,
            content_type=content_type,
            metadata=normalize_metadata(metadata),
            content_disposition=content_disposition,
        )
        staged: list[Path] = []
        try:
            descriptor = os.open(path, os.O_RDONLY)
            try:
                os.fchmod(descriptor, 0o600)
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
            meta_temp = self._stage(staged, lambda out: out.write(_sidecar_json(info)))
            changed = _move_into_place(meta_temp, meta_path)
            staged.remove(meta_temp)
            try:
                changed += _move_into_place(Path(path), object_path)
            except OSError as error:
                if error.errno != errno.EXDEV:
                    raise
                # Another filesystem: copy after all.
                return super().put_file(
                    key, path, content_type=content_type, metadata=metadata, content_disposition=content_disposition
                )
            _sync_directories(changed)
        except OSError as error:
            raise StorageUnavailable(f"cannot write {key!r} under {self.root}: {error}") from error
        finally:
            for staged_path in staged:
                staged_path.unlink(missing_ok=True)
        return info

    def open(self, key: str) -> BinaryIO:
        # An open file keeps reading the version it opened even if a put replaces the key meanwhile.
        try:
            return self._object_path(key).open("rb")
        except FileNotFoundError:
            raise BlobNotFound(key) from None
        except OSError as error:
            raise StorageUnavailable(f"cannot read {key!r}: {error}") from error

    def head(self, key: str) -> BlobInfo | None:
        object_path, meta_path = self._object_path(key), self._meta_path(key)
        try:
            size = object_path.stat().st_size
        except FileNotFoundError:
            return None
        except OSError as error:
            raise StorageUnavailable(f"cannot read {key!r}: {error}") from error
        try:
            sidecar = json.loads(meta_path.read_bytes())
        except FileNotFoundError:
            sidecar = {}  # a put raced a delete of this key: still serve the bytes, as octet-stream
        except OSError as error:
            raise StorageUnavailable(f"cannot read {key!r}: {error}") from error
        except ValueError as error:  # sidecars are written atomically, so only a damaged disk gets here
            raise StorageError(f"metadata of {key!r} is unreadable: {error}") from error
        return BlobInfo(
            key=key,
            size=size,
            content_type=sidecar.get("content_type", _DEFAULT_CONTENT_TYPE),
            metadata=sidecar.get("metadata", {}),
            content_disposition=sidecar.get("content_disposition"),
        )

    def delete(self, key: str) -> bool:
        object_path, meta_path = self._object_path(key), self._meta_path(key)
        try:
            # Object first: the sidecar must outlive it (see put).
            try:
                object_path.unlink()
                deleted = True
            except FileNotFoundError:
                deleted = False
            meta_path.unlink(missing_ok=True)
            _remove_empty_parents(object_path, self._objects)
            _remove_empty_parents(meta_path, self._meta)
        except OSError as error:
            raise StorageUnavailable(f"cannot delete {key!r}: {error}") from error
        return deleted

    def path(self, key: str) -> Path:
        """The object's file, for the web layer to serve (HEAD, Range). BlobNotFound when missing."""
        object_path = self._object_path(key)
        if not object_path.is_file():
            raise BlobNotFound(key)
        return object_path

    def create_if_missing(self) -> bool:
        # The constructor made the directories already; this only proves they can be written to.
        self.check()
        return False

    def check(self) -> None:
        # Writing is what fails when a volume is missing, read-only or full, so try a real write.
        try:
            with tempfile.TemporaryFile(dir=self._tmp) as probe:
                probe.write(b"ready")
        except OSError as error:
            raise StorageUnavailable(f"local blob store {self.root} is not writable: {error}") from error

    # Signed URLs -----------------------------------------------------------------------------------
    def signed_url(
        self,
        key: str,
        *,
        expires_in: int,
        filename: str | None = None,
        content_type: str | None = None,
        disposition: str = "inline",
    ) -> SignedUrl:
        """A URL relative to this service's public base URL: "/media/<key>?expires=..&signature=..".
        The signature covers the key, the expiry and every response override."""
        validate_key(key)
        check_url_lifetime(expires_in)
        if disposition not in DISPOSITIONS:
            raise ValueError(f"disposition must be one of {DISPOSITIONS}, not {disposition!r}")
        if content_type is not None:
            check_header_value("content_type", content_type)
        display_name = sanitize_filename(filename) if filename else None
        expires = int(time.time()) + expires_in
        query = {"expires": str(expires), "disposition": disposition}
        if display_name:
            query["filename"] = display_name
        if content_type:
            query["content_type"] = content_type
        query["signature"] = self._signer.sign(key, expires, disposition, display_name or None, content_type)
        return SignedUrl(
            url=f"{self.url_prefix}{quote(key)}?{urlencode(query, quote_via=quote)}",
            expires_at=datetime.fromtimestamp(expires, UTC),
        )

    def verify_signed_request(
        self, path_key: str, query: Mapping[str, str], now: float | None = None
    ) -> SignedRequest | None:
        """The signed request for `path_key` (the URL path after `url_prefix`, percent-decoded) and its
        query, or None when it is malformed, tampered with or expired. Never raises on what a client
        sends: every field is checked for type and shape before use."""
        expires_text = query.get("expires")
        signature = query.get("signature")
        disposition = query.get("disposition")
        filename = query.get("filename")
        content_type = query.get("content_type")
        if not (
            isinstance(path_key, str)
            and isinstance(expires_text, str)
            and isinstance(signature, str)
            and isinstance(disposition, str)
            and isinstance(filename, (str, type(None)))
            and isinstance(content_type, (str, type(None)))
            and disposition in DISPOSITIONS
            and _EXPIRES.fullmatch(expires_text)
        ):
            return None
        try:
            validate_key(path_key)
        except ValueError:
            return None
        expires = int(expires_text)
        if not self._signer.verify(signature, path_key, expires, disposition, filename, content_type):
            return None
        if (time.time() if now is None else now) >= expires:
            return None
        return SignedRequest(
            key=path_key,
            expires_at=datetime.fromtimestamp(expires, UTC),
            disposition=disposition,
            filename=filename,
            content_type=content_type,
        )

    # Paths -----------------------------------------------------------------------------------------
    def _object_path(self, key: str) -> Path:
        return self._objects / validate_key(key)

    def _meta_path(self, key: str) -> Path:
        return self._meta / (validate_key(key) + ".json")

    def _stage(self, staged: list[Path], write: Callable[[BinaryIO], object]) -> Path:
        """Write a complete, synced file in tmp/ and return its path (recorded in `staged` at once, so
        the caller removes it whatever happens)."""
        descriptor, name = tempfile.mkstemp(dir=self._tmp, prefix="put-")
        path = Path(name)
        staged.append(path)
        with os.fdopen(descriptor, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        return path


def _copy(reader: SourceReader, out: BinaryIO) -> None:
    while chunk := reader.read(CHUNK_SIZE):
        out.write(chunk)


def _sidecar_json(info: BlobInfo) -> bytes:
    return json.dumps(
        {
            "content_type": info.content_type,
            "metadata": info.metadata,
            "content_disposition": info.content_disposition,
            "size": info.size,
        }
    ).encode()


def _move_into_place(staged: Path, target: Path) -> list[Path]:
    """Rename `staged` to `target`, making its directories as needed. Returns the directories whose
    entries changed, for _sync_directories."""
    for attempt in range(1, _MOVE_ATTEMPTS + 1):
        made = _make_directories(target.parent)
        try:
            os.replace(staged, target)
            return [*made, target.parent]
        except FileNotFoundError:
            if attempt == _MOVE_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def _make_directories(directory: Path) -> list[Path]:
    """Make `directory` and its missing ancestors; returns the parents that gained an entry (a new
    directory is durable only once its parent is synced, like a renamed file)."""
    missing = []
    while not directory.is_dir():
        missing.append(directory)
        directory = directory.parent
    for path in reversed(missing):
        # Made meanwhile by a concurrent put: synced here all the same, as that put may not have yet.
        path.mkdir(exist_ok=True)
    return [path.parent for path in reversed(missing)]


def _sync_directories(directories: list[Path]) -> None:
    """A rename (or a new directory) is durable only once its directory entry is on disk. Called once
    after both renames of a put rather than after each: on journaling file systems the first flush
    usually carries the other changes too, so the rest return at once instead of each waiting for a
    journal commit. Until then the put has not returned, so nobody has been told the object exists."""
    for path in dict.fromkeys(directories):
        directory = os.open(path, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def _remove_empty_parents(path: Path, top: Path) -> None:
    """Remove the directories a key made, up to `top`, while they are empty (keys are one directory per
    message, so leaving them would pile up millions of empty ones)."""
    for directory in path.parents:
        if directory == top:
            return
        try:
            directory.rmdir()
        except OSError:  # not empty, or already gone: the directories above are in use too
            return
