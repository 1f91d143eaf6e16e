"""What only the S3 and Azure stores do: URLs the backend itself serves, and backend failures
translated into BlobNotFound, StorageUnavailable (retry later) or StorageError (do not)."""

import io
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from storage import (
    AzureBlobStore,
    BlobNotFound,
    BlobStore,
    S3BlobStore,
    StorageError,
    StorageUnavailable,
    content_disposition,
)
from tests.fixtures.blob_servers import MOTO_CREDENTIALS, azurite_connection_string, unique_bucket_name
from tests.fixtures.services import free_port

from .stub_http import ScriptedResponse, StubHTTPServer

KEY = "tenant-a/2026/11/21/0b5e7f0c-8f7e-4a53-9d56-7f1b1c1d2e3f/0"
REMOTE_BACKENDS = ("s3", "azure")
SEVEN_DAYS = timedelta(days=7)
# One attempt and short timeouts: these tests are about what a failure becomes, not about waiting.
FAIL_FAST = {"connect_timeout": 1, "read_timeout": 0.5, "max_attempts": 1}


@pytest.fixture(params=REMOTE_BACKENDS)
def remote_store(request: pytest.FixtureRequest) -> BlobStore:
    return request.getfixturevalue(f"make_{request.param}_store")()


def store_at(backend: str, endpoint: str) -> BlobStore:
    """A store of `backend` talking to whatever listens at `endpoint` (nothing, or a stub)."""
    if backend == "s3":
        return S3BlobStore("some-bucket", endpoint_url=endpoint, **MOTO_CREDENTIALS, **FAIL_FAST)
    return AzureBlobStore("some-container", connection_string=azurite_connection_string(endpoint), **FAIL_FAST)


@pytest.fixture
def stub_server() -> Iterator[StubHTTPServer]:
    server = StubHTTPServer()
    server.start()
    yield server
    server.stop()


# Signed URLs, fetched as a client would ------------------------------------------------------------
def test_signed_url_serves_the_bytes_with_the_signed_type_and_disposition(remote_store):
    remote_store.put(KEY, io.BytesIO(b"%PDF-1.7 tiny"), content_type="application/octet-stream")
    filename = "../../Résumé 照片\r\n.pdf"
    signed = remote_store.signed_url(
        KEY, expires_in=300, filename=filename, content_type="application/pdf", disposition="attachment"
    )

    response = requests.get(signed.url, timeout=10)
    assert response.status_code == 200
    assert response.content == b"%PDF-1.7 tiny"
    assert response.headers["Content-Type"] == "application/pdf"
    assert response.headers["Content-Disposition"] == content_disposition("attachment", filename)


def test_signed_url_without_overrides_serves_the_stored_type_inline(remote_store):
    remote_store.put(KEY, io.BytesIO(b"GIF89a"), content_type="image/gif")
    response = requests.get(remote_store.signed_url(KEY, expires_in=60).url, timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/gif"
    assert response.headers["Content-Disposition"] == "inline"


def test_s3_urls_are_clamped_to_seven_days(make_s3_store):
    store = make_s3_store()
    before = datetime.now(UTC).replace(microsecond=0)
    signed = store.signed_url(KEY, expires_in=30 * 24 * 3600)
    query = parse_qs(urlsplit(signed.url).query)
    signed_at = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)

    assert query["X-Amz-Expires"] == ["604800"]
    assert before + SEVEN_DAYS <= signed.expires_at <= signed_at + SEVEN_DAYS

    assert parse_qs(urlsplit(store.signed_url(KEY, expires_in=3600).url).query)["X-Amz-Expires"] == ["3600"]


def test_azure_account_key_sas_is_read_only_and_expires_when_asked(make_azure_store):
    store = make_azure_store()
    store.put(KEY, io.BytesIO(b"original"), content_type="text/plain")
    signed = store.signed_url(KEY, expires_in=30 * 24 * 3600)
    query = parse_qs(urlsplit(signed.url).query)

    # Signed with the account key, so Azure's 7-day cap for user delegation keys does not apply.
    assert query["se"] == [signed.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")]
    assert signed.expires_at - datetime.now(UTC) > timedelta(days=29)
    assert query["sp"] == ["r"]
    overwrite = requests.put(signed.url, data=b"replaced", headers={"x-ms-blob-type": "BlockBlob"}, timeout=10)
    assert overwrite.status_code == 403
    assert store.open(KEY).read() == b"original"


def test_azure_user_delegation_sas_is_capped_at_seven_days(azurite_oauth_blob_endpoint, monkeypatch):
    endpoint = azurite_oauth_blob_endpoint
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(endpoint.ca_bundle))  # trusted by the SDK's HTTP client
    store = AzureBlobStore(unique_bucket_name(), account_url=endpoint.account_url, credential=endpoint.credential)
    store.create_if_missing()
    before = datetime.now(UTC).replace(microsecond=0)

    capped = store.signed_url(KEY, expires_in=30 * 24 * 3600, filename="a.pdf", content_type="application/pdf")
    short = store.signed_url(KEY, expires_in=3600)

    capped_query, short_query = (parse_qs(urlsplit(url).query) for url in (capped.url, short.url))
    assert before + SEVEN_DAYS - timedelta(minutes=10) <= capped.expires_at <= before + SEVEN_DAYS
    assert capped_query["se"] == [capped.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")]
    assert capped_query["sp"] == ["r"] and capped_query["spr"] == ["https"] and "skoid" in capped_query
    assert before + timedelta(seconds=3600) <= short.expires_at <= before + timedelta(seconds=3602)
    # One delegation key serves both URLs: no round trip to Azure per link.
    assert short_query["ske"] == capped_query["ske"]
    # Not fetched: Azurite 3.35 cannot check user delegation SAS of this SDK's newer version.


# Backend state -------------------------------------------------------------------------------------
def test_s3_check_reports_a_missing_bucket_as_an_error_not_an_outage(make_s3_store):
    store = make_s3_store()
    missing = S3BlobStore(unique_bucket_name(), client=store.client)
    with pytest.raises(StorageError) as raised:
        missing.check()
    assert not isinstance(raised.value, StorageUnavailable)


def test_azure_container_is_created_by_create_if_missing_only(azurite_blob_endpoint):
    store = AzureBlobStore(unique_bucket_name(), connection_string=azurite_blob_endpoint)
    with pytest.raises(StorageError) as raised:
        store.check()
    assert not isinstance(raised.value, StorageUnavailable)
    with pytest.raises(StorageError):
        store.put(KEY, io.BytesIO(b"x"), content_type="text/plain")

    assert store.create_if_missing() is True
    assert store.create_if_missing() is False  # idempotent
    store.check()


def test_prefix_keeps_keys_apart(make_s3_store, make_azure_store):
    for make in (make_s3_store, make_azure_store):
        plain = make()
        prefixed = make(
            **({"bucket": plain.bucket} if isinstance(plain, S3BlobStore) else {"container": plain.container}),
            prefix="/env/test/",
        )
        prefixed.put(KEY, io.BytesIO(b"prefixed"), content_type="text/plain")
        assert plain.head(KEY) is None
        assert plain.head(f"env/test/{KEY}").size == len(b"prefixed")
        assert prefixed.head(KEY).key == KEY


# Failures ------------------------------------------------------------------------------------------
def all_network_operations(store: BlobStore) -> dict[str, object]:
    return {
        "check": store.check,
        "put": lambda: store.put(KEY, io.BytesIO(b"x"), content_type="text/plain"),
        "head": lambda: store.head(KEY),
        "open": lambda: store.open(KEY),
        "delete": lambda: store.delete(KEY),
    }


@pytest.mark.parametrize("backend", REMOTE_BACKENDS)
def test_a_closed_port_makes_every_operation_unavailable(backend):
    store = store_at(backend, f"http://127.0.0.1:{free_port()}")
    for operation in all_network_operations(store).values():
        with pytest.raises(StorageUnavailable):
            operation()
    # Signing is local computation: it works while the backend is down.
    assert store.signed_url(KEY, expires_in=60).url


@pytest.mark.parametrize("backend", REMOTE_BACKENDS)
def test_a_backend_that_never_answers_is_unavailable(backend):
    with socket.socket() as listener:  # accepts connections (the kernel does) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        store = store_at(backend, f"http://127.0.0.1:{listener.getsockname()[1]}")
        with pytest.raises(StorageUnavailable):
            store.head(KEY)


def s3_error(status: int, code: str) -> ScriptedResponse:
    return ScriptedResponse(
        status,
        {"Content-Type": "application/xml"},
        f"<Error><Code>{code}</Code><Message>scripted</Message></Error>".encode(),
    )


def azure_error(status: int, code: str) -> ScriptedResponse:
    return ScriptedResponse(
        status,
        {"Content-Type": "application/xml", "x-ms-error-code": code},
        f"<Error><Code>{code}</Code><Message>scripted</Message></Error>".encode(),
    )


@pytest.mark.parametrize(
    ("backend", "answer", "expected"),
    [
        ("s3", s3_error(503, "SlowDown"), StorageUnavailable),
        ("s3", s3_error(500, "InternalError"), StorageUnavailable),
        ("s3", s3_error(400, "RequestTimeout"), StorageUnavailable),
        ("s3", s3_error(403, "AccessDenied"), StorageError),
        ("s3", s3_error(404, "NoSuchKey"), BlobNotFound),
        ("azure", azure_error(503, "ServerBusy"), StorageUnavailable),
        ("azure", azure_error(500, "InternalError"), StorageUnavailable),
        ("azure", azure_error(403, "AuthenticationFailed"), StorageError),
        ("azure", azure_error(404, "BlobNotFound"), BlobNotFound),
        ("azure", azure_error(404, "ContainerNotFound"), StorageError),
    ],
    ids=lambda value: getattr(value, "status", value if isinstance(value, str) else None),
)
def test_backend_error_answers_are_translated(stub_server, backend, answer, expected):
    stub_server.response = answer
    store = store_at(backend, stub_server.url)
    with pytest.raises(StorageError) as raised:
        store.open(KEY)
    assert type(raised.value) is expected


@pytest.mark.parametrize("backend", REMOTE_BACKENDS)
def test_an_upload_refused_with_503_is_unavailable(stub_server, backend):
    stub_server.response = s3_error(503, "SlowDown") if backend == "s3" else azure_error(503, "ServerBusy")
    with pytest.raises(StorageUnavailable):
        store_at(backend, stub_server.url).put(KEY, io.BytesIO(b"x" * 1000), content_type="text/plain")


@pytest.mark.parametrize("backend", REMOTE_BACKENDS)
def test_a_download_cut_short_is_unavailable(stub_server, backend):
    # A ranged answer, as Azure's downloader insists on; S3's client does not mind.
    stub_server.response = ScriptedResponse(
        206,
        {
            "Content-Type": "text/plain",
            "Content-Range": "bytes 0-10099/10100",
            "ETag": '"0x1"',
            "Last-Modified": "Sat, 21 Nov 2026 10:00:00 GMT",
            "x-ms-blob-type": "BlockBlob",
        },
        body=b"x" * 100,
        cut_short_by=10_000,
    )
    store = store_at(backend, stub_server.url)
    with pytest.raises(StorageUnavailable), store.open(KEY) as stream:
        stream.read()
