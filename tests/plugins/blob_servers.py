"""Blob storage backends for the tests, on loopback: moto's S3 server (in-process) and Azurite (a Node
subprocess), each started once per pytest-xdist worker, the first time a test asks for it.

Factories give each test its own store (a fresh directory, bucket or container); `blob_store` runs one
test against all three backends.
"""
from __future__ import annotations

import base64
import ipaddress
import itertools
import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from storage import BlobStore, LocalBlobStore
from tests.plugins.services import free_port, service_unavailable, tcp_reachable, xdist_worker

if TYPE_CHECKING:  # imported where used, so the rest of the suite does not load boto3 and the Azure SDK
    from azure.core.credentials import AccessToken

    from storage import AzureBlobStore, S3BlobStore

BLOB_BACKENDS = ("local", "s3", "azure")
TEST_SIGNING_KEY = b"blob-store-test-signing-key-0123456789"
# moto accepts any credentials; explicit dummy ones keep boto3 away from a developer's real AWS setup.
MOTO_CREDENTIALS = {"access_key_id": "testing", "secret_access_key": "testing"}
# Azurite's built-in account and key, published in Microsoft's emulator documentation (not a secret).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
AZURITE_BINARY = Path(__file__).resolve().parents[2] / "node_modules" / ".bin" / "azurite-blob"
AZURITE_START_SECONDS = 30
AZURITE_PORT_ATTEMPTS = 3


def azurite_connection_string(blob_endpoint: str) -> str:
    """A connection string for Azurite's account at `blob_endpoint` ("http://127.0.0.1:10000")."""
    return (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint={blob_endpoint}/{AZURITE_ACCOUNT};")


def unique_bucket_name() -> str:
    """A name valid as an S3 bucket and an Azure container, unique across tests and xdist workers."""
    return f"test-{xdist_worker()}-{uuid.uuid4().hex[:16]}".lower()


# Servers -------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def moto_s3_endpoint() -> Iterator[str]:
    """URL of moto's S3 server, running in this process on 127.0.0.1 and a port the OS picked."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as error:
        service_unavailable("moto's S3 server", f"{error} (install the [test] extra: moto[server])")
    # Port 0: the OS picks a free port as the server binds, so no other worker can take it meanwhile.
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def azurite_blob_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Connection string of an Azurite blob service started for this worker (account devstoreaccount1)."""
    with _running_azurite(tmp_path_factory.mktemp(f"azurite-{xdist_worker()}"), []) as port:
        yield azurite_connection_string(f"http://127.0.0.1:{port}")


@dataclass(frozen=True)
class AzuriteOAuthEndpoint:
    account_url: str
    # The self-signed certificate Azurite serves: trust it (REQUESTS_CA_BUNDLE) to talk to it.
    ca_bundle: Path
    credential: UnsignedTokenCredential


@pytest.fixture(scope="session")
def azurite_oauth_blob_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzuriteOAuthEndpoint]:
    """An Azurite blob service that takes bearer tokens (so user delegation keys can be asked for). Azure
    accepts tokens only over HTTPS, so it serves HTTPS with a certificate made here."""
    workdir = tmp_path_factory.mktemp(f"azurite-oauth-{xdist_worker()}")
    certificate, key = _self_signed_certificate(workdir)
    with _running_azurite(workdir, ["--oauth", "basic", "--cert", str(certificate), "--key", str(key)]) as port:
        yield AzuriteOAuthEndpoint(account_url=f"https://127.0.0.1:{port}/{AZURITE_ACCOUNT}",
                                   ca_bundle=certificate, credential=UnsignedTokenCredential())


class UnsignedTokenCredential:
    """Azure token credential for Azurite's `--oauth basic`, which checks a token's issuer, audience and
    validity times but not its signature."""

    def get_token(self, *scopes: str, **options: object) -> AccessToken:
        from azure.core.credentials import AccessToken

        now = int(time.time())
        claims = {"iss": "https://sts.windows.net/00000000-0000-0000-0000-000000000001/",
                  "aud": "https://storage.azure.com", "iat": now - 60, "nbf": now - 60, "exp": now + 3600,
                  "oid": "00000000-0000-0000-0000-000000000002", "tid": "00000000-0000-0000-0000-000000000001"}
        return AccessToken(f"{_base64url_json({'alg': 'none', 'typ': 'JWT'})}.{_base64url_json(claims)}.",
                           now + 3600)


def _base64url_json(value: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def _self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256()))
    certificate_path, key_path = directory / "azurite-cert.pem", directory / "azurite-key.pem"
    certificate_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return certificate_path, key_path


@contextmanager
def _running_azurite(workdir: Path, extra_arguments: list[str]) -> Iterator[int]:
    """Start azurite-blob on a free loopback port, yield the port, stop it afterwards."""
    binary = str(AZURITE_BINARY) if AZURITE_BINARY.exists() else shutil.which("azurite-blob")
    if binary is None:
        service_unavailable("Azurite", "azurite-blob not found: run `npm install` at the repository root")
    log_path = workdir / "azurite.log"
    for _ in range(AZURITE_PORT_ATTEMPTS):
        port = free_port()
        process = _start_azurite(binary, port, extra_arguments, workdir, log_path)
        if _wait_until_listening(process, port):
            break
        _stop(process)  # most likely another process took the port first: try another one
    else:
        log_tail = log_path.read_text(errors="replace")[-2000:]
        service_unavailable("Azurite", f"{binary} did not start listening: {log_tail or 'no output'}")
    try:
        yield port
    finally:
        _stop(process)


def _start_azurite(binary: str, port: int, extra_arguments: list[str], workdir: Path,
                   log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [binary, "--silent", "--inMemoryPersistence", "--disableTelemetry",
             "--blobHost", "127.0.0.1", "--blobPort", str(port),
             # The SDK may speak a newer API version than this Azurite knows; --loose ignores headers
             # Azurite does not implement instead of failing on them.
             "--skipApiVersionCheck", "--loose", *extra_arguments],
            # In-memory persistence writes no data; the working directory only catches stray files.
            cwd=workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)


def _wait_until_listening(process: subprocess.Popen[bytes], port: int) -> bool:
    deadline = time.monotonic() + AZURITE_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if tcp_reachable("127.0.0.1", port, timeout=0.2):
            return process.poll() is None
        time.sleep(0.05)
    return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# Store factories -----------------------------------------------------------------------------------
@pytest.fixture
def make_local_store(tmp_path: Path) -> Callable[..., LocalBlobStore]:
    """make_local_store(**options) -> a LocalBlobStore in a new directory under tmp_path. Options are
    LocalBlobStore's (root, signing_key, url_prefix)."""
    roots = itertools.count()

    def make(**options: object) -> LocalBlobStore:
        options.setdefault("root", tmp_path / f"blobs-{next(roots)}")
        options.setdefault("signing_key", TEST_SIGNING_KEY)
        return LocalBlobStore(**options)  # type: ignore[arg-type]

    return make


@pytest.fixture
def make_s3_store(moto_s3_endpoint: str) -> Iterator[Callable[..., S3BlobStore]]:
    """make_s3_store(**options) -> an S3BlobStore on moto's server. Options are S3BlobStore's; without
    `bucket`, a new bucket is made for the store and removed after the test."""
    from storage import S3BlobStore

    created: list[S3BlobStore] = []

    def make(**options: object) -> S3BlobStore:
        new_bucket = "bucket" not in options
        bucket = str(options.pop("bucket", unique_bucket_name()))
        store = S3BlobStore(bucket, **{"endpoint_url": moto_s3_endpoint, **MOTO_CREDENTIALS, **options})
        if new_bucket:
            store.client.create_bucket(Bucket=bucket)
            created.append(store)
        return store

    yield make
    for store in created:  # moto keeps everything in memory, for the whole session
        for page in store.client.get_paginator("list_objects_v2").paginate(Bucket=store.bucket):
            for item in page.get("Contents", []):
                store.client.delete_object(Bucket=store.bucket, Key=item["Key"])
        store.client.delete_bucket(Bucket=store.bucket)


@pytest.fixture
def make_azure_store(azurite_blob_endpoint: str) -> Iterator[Callable[..., AzureBlobStore]]:
    """make_azure_store(**options) -> an AzureBlobStore on Azurite. Options are AzureBlobStore's; without
    `container`, a new container is made for the store and removed after the test."""
    from azure.storage.blob import BlobServiceClient

    from storage import AzureBlobStore

    containers: list[str] = []

    def make(**options: object) -> AzureBlobStore:
        new_container = "container" not in options
        container = str(options.pop("container", unique_bucket_name()))
        store = AzureBlobStore(container, **{"connection_string": azurite_blob_endpoint, **options})
        if new_container:
            store.ensure_container()
            containers.append(container)
        return store

    yield make
    service = BlobServiceClient.from_connection_string(azurite_blob_endpoint)
    for container in containers:
        service.delete_container(container)


@pytest.fixture(params=BLOB_BACKENDS)
def blob_store(request: pytest.FixtureRequest) -> BlobStore:
    """A fresh store of each backend in turn; a backend's server starts only when its turn comes."""
    return request.getfixturevalue(f"make_{request.param}_store")()
