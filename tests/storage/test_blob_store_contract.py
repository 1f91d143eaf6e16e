"""The behaviour every blob store promises, checked against each backend (local, S3, Azure)."""

import hashlib
import io
from datetime import UTC, datetime

import pytest

from storage import BlobInfo, BlobNotFound, SignedUrl, content_disposition
from storage.streams import SourceSizeMismatch

from .sources import MIB, FailingSource, PatternSource, SourceBroke, pattern_sha256

KEY = "tenant-a/2026/11/21/0b5e7f0c-8f7e-4a53-9d56-7f1b1c1d2e3f/0"
BAD_KEYS = ["../x", "/abs", "a//b", "a/./b", "with space", "nul\x00byte"]


def read_all(store, key: str) -> bytes:
    with store.open(key) as stream:
        return stream.read()


def test_put_head_open_delete_roundtrip(blob_store):
    disposition = content_disposition("inline", "café.png")
    info = blob_store.put(
        KEY,
        io.BytesIO(b"\x89PNG not really"),
        content_type="image/png",
        metadata={"X-Sha256": "ab12", "declared_type": "image/jpeg", "note": ""},
        content_disposition=disposition,
    )

    expected = BlobInfo(
        key=KEY,
        size=15,
        content_type="image/png",
        metadata={"x_sha256": "ab12", "declared_type": "image/jpeg", "note": ""},
        content_disposition=disposition,
    )
    assert info == expected
    assert blob_store.head(KEY) == expected
    assert read_all(blob_store, KEY) == b"\x89PNG not really"

    assert blob_store.delete(KEY) is True
    assert blob_store.head(KEY) is None
    assert blob_store.delete(KEY) is False
    with pytest.raises(BlobNotFound):
        blob_store.open(KEY)


def test_missing_keys(blob_store):
    assert blob_store.head("nothing/here") is None
    assert blob_store.delete("nothing/here") is False
    with pytest.raises(BlobNotFound):
        blob_store.open("nothing/here")


def test_put_without_disposition_or_metadata(blob_store):
    blob_store.put(KEY, io.BytesIO(b""), content_type="text/plain")
    assert blob_store.head(KEY) == BlobInfo(
        key=KEY, size=0, content_type="text/plain", metadata={}, content_disposition=None
    )
    assert read_all(blob_store, KEY) == b""


def test_put_replaces_the_previous_object(blob_store):
    blob_store.put(KEY, io.BytesIO(b"first"), content_type="text/plain", metadata={"version": "1"})
    blob_store.put(KEY, io.BytesIO(b"second"), content_type="application/pdf", metadata={"version": "2"})
    info = blob_store.head(KEY)
    assert (info.size, info.content_type, info.metadata) == (6, "application/pdf", {"version": "2"})
    assert read_all(blob_store, KEY) == b"second"


@pytest.mark.parametrize("max_read", [None, 64 * 1024], ids=["full-reads", "short-reads"])
def test_a_stream_one_byte_over_5_mib_is_stored_whole_without_read_all(blob_store, max_read):
    size = 5 * MIB + 1
    source = PatternSource(size, max_read=max_read)
    info = blob_store.put(KEY, source, content_type="video/mp4", size=size)

    assert info.size == size
    assert blob_store.head(KEY).size == size
    # Never "read everything": every read asked for a bounded chunk.
    assert all(0 < requested <= 8 * MIB for requested in source.requested_sizes)
    digest = hashlib.sha256()
    with blob_store.open(KEY) as stream:
        while chunk := stream.read(MIB):
            digest.update(chunk)
    assert digest.hexdigest() == pattern_sha256(size)


def test_a_source_failing_half_way_leaves_nothing_visible(blob_store):
    with pytest.raises(SourceBroke):
        blob_store.put(KEY, FailingSource(fail_after=3 * MIB), content_type="video/mp4")
    assert blob_store.head(KEY) is None
    with pytest.raises(BlobNotFound):
        blob_store.open(KEY)


def test_a_source_failing_half_way_leaves_the_previous_object_intact(blob_store):
    blob_store.put(
        KEY,
        io.BytesIO(b"previous"),
        content_type="text/plain",
        metadata={"version": "1"},
        content_disposition="attachment",
    )
    with pytest.raises(SourceBroke):
        blob_store.put(KEY, FailingSource(fail_after=5 * MIB), content_type="video/mp4", metadata={"version": "2"})
    assert blob_store.head(KEY) == BlobInfo(
        key=KEY, size=8, content_type="text/plain", metadata={"version": "1"}, content_disposition="attachment"
    )
    assert read_all(blob_store, KEY) == b"previous"


@pytest.mark.parametrize("declared_size", [10, 12])
def test_a_source_not_matching_its_declared_size_is_refused(blob_store, declared_size):
    with pytest.raises(SourceSizeMismatch):
        blob_store.put(KEY, io.BytesIO(b"eleven byte"), content_type="text/plain", size=declared_size)
    assert blob_store.head(KEY) is None


@pytest.mark.parametrize("bad_key", BAD_KEYS)
def test_every_operation_refuses_invalid_keys(blob_store, bad_key):
    operations = [
        lambda: blob_store.put(bad_key, io.BytesIO(b"x"), content_type="text/plain"),
        lambda: blob_store.open(bad_key),
        lambda: blob_store.head(bad_key),
        lambda: blob_store.delete(bad_key),
        lambda: blob_store.signed_url(bad_key, expires_in=60),
    ]
    for operation in operations:
        with pytest.raises(ValueError):
            operation()


@pytest.mark.parametrize(
    "arguments",
    [
        {"content_type": "text/html\r\nX-Injected: 1"},
        {"content_type": "text/plain", "content_disposition": "inline\nX-Injected: 1"},
        {"content_type": "text/plain", "metadata": {"bad name": "x"}},
    ],
)
def test_unsafe_header_values_are_refused_before_writing(blob_store, arguments):
    with pytest.raises(ValueError):
        blob_store.put(KEY, io.BytesIO(b"x"), **arguments)
    assert blob_store.head(KEY) is None


def test_signed_urls_expire_in_the_future(blob_store):
    blob_store.put(KEY, io.BytesIO(b"x"), content_type="text/plain")
    before = datetime.now(UTC)
    signed = blob_store.signed_url(KEY, expires_in=600, filename="x.txt", disposition="attachment")
    assert isinstance(signed, SignedUrl) and signed.expires_at.tzinfo is not None
    assert 598 <= (signed.expires_at - before).total_seconds() <= 601


@pytest.mark.parametrize(
    "arguments",
    [
        {"expires_in": 0},
        {"expires_in": -5},
        {"expires_in": 1.5},
        {"expires_in": 60, "disposition": "evil"},
        {"expires_in": 60, "content_type": "text/html\nX: y"},
    ],
)
def test_signed_url_arguments_are_checked(blob_store, arguments):
    with pytest.raises(ValueError):
        blob_store.signed_url(KEY, **arguments)


def test_check_passes_on_a_working_store(blob_store):
    blob_store.check()
