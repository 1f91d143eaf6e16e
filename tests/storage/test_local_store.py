"""What only the local store does: its files on disk, and the signed URLs this service verifies."""

import io
import json
import os
import shutil
import sys
from datetime import UTC, datetime
from urllib.parse import parse_qsl, unquote, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage import BlobNotFound, LocalBlobStore, StorageUnavailable
from storage.local import SignedRequest
from tests.fixtures.blob_servers import TEST_SIGNING_KEY

from .sources import FailingSource, SourceBroke

KEY = "tenant-a/2026/11/21/0b5e7f0c-8f7e-4a53-9d56-7f1b1c1d2e3f/0"


def split_signed_url(url: str, prefix: str = "/media/") -> tuple[str, dict[str, str]]:
    """What the web layer hands to verify_signed_request: the decoded key from the path, and the query."""
    parts = urlsplit(url)
    assert parts.path.startswith(prefix) and not parts.scheme and not parts.netloc
    return unquote(parts.path[len(prefix) :]), dict(parse_qsl(parts.query, keep_blank_values=True))


@pytest.fixture
def store(make_local_store) -> LocalBlobStore:
    return make_local_store()


def test_objects_and_metadata_live_in_their_own_trees(store):
    store.put(
        KEY, io.BytesIO(b"hello"), content_type="text/plain", metadata={"Sha": "x"}, content_disposition="attachment"
    )
    assert (store.root / "objects" / KEY).read_bytes() == b"hello"
    assert json.loads((store.root / "meta" / f"{KEY}.json").read_text()) == {
        "content_type": "text/plain",
        "metadata": {"sha": "x"},
        "content_disposition": "attachment",
        "size": 5,
    }
    assert list((store.root / "tmp").iterdir()) == []
    assert store.path(KEY) == store.root / "objects" / KEY


@pytest.fixture
def synced(monkeypatch) -> list[str]:
    """The paths os.fsync is called on (Linux: read back from the descriptor), in order."""
    calls: list[str] = []
    fsync = os.fsync

    def recording_fsync(descriptor):
        calls.append(os.readlink(f"/proc/self/fd/{descriptor}"))
        return fsync(descriptor)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    return calls


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads descriptors' paths from /proc")
@pytest.mark.parametrize("method", ["put", "put_file"])
def test_a_put_is_durable_down_to_every_new_directory(store, synced, tmp_path, method):
    """Before a put returns, the bytes, the sidecar, both renames and every directory it had to make
    are on disk: a crash afterwards cannot lose an object the caller was told is stored."""
    if method == "put":
        store.put(KEY, io.BytesIO(b"hello"), content_type="text/plain")
    else:
        source = store.root / "tmp" / "upload"  # on the store's file system, so it is renamed in place
        source.write_bytes(b"hello")
        store.put_file(KEY, source, content_type="text/plain", consume=True)
    files = [path for path in synced if not os.path.isdir(path)]
    directories = {path for path in synced if os.path.isdir(path)}
    assert len(files) == 2  # the object's bytes and its sidecar, each before its rename
    made = KEY.split("/")[:-1]  # tenant, year, month, day, message: all new in a fresh store
    for tree in ("objects", "meta"):
        parents = [store.root / tree] + [store.root / tree / "/".join(made[:n]) for n in range(1, len(made) + 1)]
        assert {str(path) for path in parents} <= directories, tree
    # The next object of the same message makes no directory: only the two entries are synced.
    synced.clear()
    store.put(KEY[:-1] + "1", io.BytesIO(b"again"), content_type="text/plain")
    message_directories = {str(store.root / tree / KEY.rsplit("/", 1)[0]) for tree in ("objects", "meta")}
    assert {path for path in synced if os.path.isdir(path)} == message_directories


def test_a_failed_put_leaves_no_temporary_files(store):
    with pytest.raises(SourceBroke):
        store.put(KEY, FailingSource(fail_after=100_000), content_type="text/plain")
    assert list((store.root / "tmp").iterdir()) == []
    assert not (store.root / "meta" / f"{KEY}.json").exists()


def test_path_of_a_missing_or_invalid_key(store):
    with pytest.raises(BlobNotFound):
        store.path(KEY)
    with pytest.raises(ValueError):
        store.path("../../etc/passwd")


def test_delete_removes_emptied_directories_only(store):
    sibling = KEY[:-1] + "1"
    store.put(KEY, io.BytesIO(b"a"), content_type="text/plain")
    store.put(sibling, io.BytesIO(b"b"), content_type="text/plain")
    message_directory = store.root / "objects" / KEY.rsplit("/", 1)[0]

    store.delete(KEY)
    assert message_directory.is_dir()
    store.delete(sibling)
    assert not message_directory.exists()
    assert list((store.root / "objects").iterdir()) == []
    assert list((store.root / "meta").iterdir()) == []


def test_an_object_whose_metadata_is_gone_is_served_as_octet_stream(store):
    # Only a put racing a delete of the same key can leave this; the object must stay readable.
    store.put(KEY, io.BytesIO(b"abc"), content_type="text/plain")
    (store.root / "meta" / f"{KEY}.json").unlink()
    info = store.head(KEY)
    assert (info.size, info.content_type, info.metadata) == (3, "application/octet-stream", {})


def test_a_missing_volume_makes_the_store_unavailable(store):
    shutil.rmtree(store.root)
    with pytest.raises(StorageUnavailable):
        store.check()
    with pytest.raises(StorageUnavailable):
        store.put(KEY, io.BytesIO(b"x"), content_type="text/plain")


@pytest.mark.parametrize(
    "options",
    [
        {"signing_key": b"short"},
        {"signing_key": "a text key, not bytes"},
        {"url_prefix": "media/"},
        {"url_prefix": "/media"},
    ],
)
def test_constructor_refuses_bad_settings(make_local_store, options):
    with pytest.raises(ValueError):
        make_local_store(**options)


# Signed URLs ---------------------------------------------------------------------------------------
def test_signed_url_is_relative_and_carries_the_signed_overrides(store):
    signed = store.signed_url(
        KEY, expires_in=300, filename="../Résumé.pdf", content_type="application/pdf", disposition="attachment"
    )
    path_key, query = split_signed_url(signed.url)
    assert path_key == KEY
    assert query["expires"] == str(int(signed.expires_at.timestamp()))
    assert (query["disposition"], query["filename"], query["content_type"]) == (
        "attachment",
        "Résumé.pdf",
        "application/pdf",
    )

    verified = store.verify_signed_request(path_key, query)
    assert verified == SignedRequest(
        key=KEY,
        expires_at=signed.expires_at,
        disposition="attachment",
        filename="Résumé.pdf",
        content_type="application/pdf",
    )
    assert verified.content_disposition == (
        "attachment; filename=\"Resume.pdf\"; filename*=UTF-8''R%C3%A9sum%C3%A9.pdf"
    )


def test_signed_url_without_overrides(store):
    path_key, query = split_signed_url(store.signed_url(KEY, expires_in=60).url)
    assert set(query) == {"expires", "disposition", "signature"}
    verified = store.verify_signed_request(path_key, query)
    assert (verified.disposition, verified.filename, verified.content_type) == ("inline", None, None)
    assert verified.content_disposition == "inline"


def test_signed_url_with_a_custom_prefix(make_local_store):
    store = make_local_store(url_prefix="/files/v1/")
    path_key, query = split_signed_url(store.signed_url(KEY, expires_in=60).url, prefix="/files/v1/")
    assert store.verify_signed_request(path_key, query) is not None


def flip_last(signature: str) -> str:
    return signature[:-1] + ("B" if signature.endswith("A") else "A")


def tampered(query: dict[str, str], **changes: str | None) -> dict[str, str]:
    result = {**query, **changes}
    return {name: value for name, value in result.items() if value is not None}


@pytest.mark.parametrize(
    ("label", "change"),
    [
        ("other key", lambda key, query: ("tenant-b" + key[len("tenant-a") :], query)),
        ("invalid key", lambda key, query: ("../" + key, query)),
        ("later expiry", lambda key, query: (key, tampered(query, expires=str(int(query["expires"]) + 1)))),
        ("padded expiry", lambda key, query: (key, tampered(query, expires="0" + query["expires"]))),
        ("signed expiry", lambda key, query: (key, tampered(query, expires="+" + query["expires"]))),
        ("huge expiry", lambda key, query: (key, tampered(query, expires="9" * 40))),
        ("no expiry", lambda key, query: (key, tampered(query, expires=None))),
        ("other disposition", lambda key, query: (key, tampered(query, disposition="inline"))),
        ("unknown disposition", lambda key, query: (key, tampered(query, disposition="attachment; x"))),
        ("no disposition", lambda key, query: (key, tampered(query, disposition=None))),
        ("other filename", lambda key, query: (key, tampered(query, filename="evil.html"))),
        ("no filename", lambda key, query: (key, tampered(query, filename=None))),
        ("empty filename", lambda key, query: (key, tampered(query, filename=""))),
        ("other content type", lambda key, query: (key, tampered(query, content_type="text/html"))),
        ("no content type", lambda key, query: (key, tampered(query, content_type=None))),
        ("no signature", lambda key, query: (key, tampered(query, signature=None))),
        ("empty signature", lambda key, query: (key, tampered(query, signature=""))),
        ("truncated signature", lambda key, query: (key, tampered(query, signature=query["signature"][:-1]))),
        ("padded signature", lambda key, query: (key, tampered(query, signature=query["signature"] + "="))),
        ("garbled signature", lambda key, query: (key, tampered(query, signature="A" * 43))),
        ("non-ASCII signature", lambda key, query: (key, tampered(query, signature="\u00e9" * 43))),
        ("one character changed", lambda key, query: (key, tampered(query, signature=flip_last(query["signature"])))),
    ],
)
def test_tampered_requests_are_refused(store, label, change):
    signed = store.signed_url(
        KEY, expires_in=300, filename="photo.jpg", content_type="image/jpeg", disposition="attachment"
    )
    path_key, query = change(*split_signed_url(signed.url))
    assert store.verify_signed_request(path_key, query) is None


def test_the_additions_of_a_filename_or_content_type_are_refused(store):
    path_key, query = split_signed_url(store.signed_url(KEY, expires_in=300).url)
    assert store.verify_signed_request(path_key, {**query, "filename": "evil.html"}) is None
    assert store.verify_signed_request(path_key, {**query, "content_type": "text/html"}) is None
    # Parameters nobody signed and nobody reads (a cache buster) change nothing.
    assert store.verify_signed_request(path_key, {**query, "v": "2"}) is not None


def test_expired_requests_are_refused(store):
    signed = store.signed_url(KEY, expires_in=60)
    path_key, query = split_signed_url(signed.url)
    expires = signed.expires_at.timestamp()
    assert store.verify_signed_request(path_key, query, now=expires - 1) is not None
    assert store.verify_signed_request(path_key, query, now=expires) is None
    assert store.verify_signed_request(path_key, query, now=expires + 3600) is None


def test_a_url_signed_with_another_key_is_refused(store, make_local_store):
    other = make_local_store(signing_key=b"another-signing-key-of-enough-length")
    path_key, query = split_signed_url(other.signed_url(KEY, expires_in=60).url)
    assert store.verify_signed_request(path_key, query) is None


def test_very_long_lifetimes_are_representable(store):
    # Seed 001 asks for 99-year links; the local store can sign them (S3 and Azure cannot).
    signed = store.signed_url(KEY, expires_in=99 * 365 * 24 * 3600)
    assert signed.expires_at.year >= datetime.now(UTC).year + 98
    assert store.verify_signed_request(*split_signed_url(signed.url)) is not None


@pytest.fixture(scope="module")
def fuzz_store(tmp_path_factory) -> LocalBlobStore:
    # Module-scoped: Hypothesis runs the test many times with one set of fixtures.
    return LocalBlobStore(tmp_path_factory.mktemp("fuzz"), signing_key=TEST_SIGNING_KEY)


query_values = st.one_of(st.text(), st.none(), st.integers(), st.binary())


@given(
    path_key=st.one_of(st.text(), st.none()),
    query=st.dictionaries(
        st.sampled_from(["expires", "signature", "disposition", "filename", "content_type", "other"]), query_values
    ),
)
def test_verification_never_raises_on_client_input(fuzz_store, path_key, query):
    assert fuzz_store.verify_signed_request(path_key, query) is None
