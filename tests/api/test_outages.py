"""Every API answers a database or blob store outage alike: 503 with `Retry-After` and
{"error": {"code": "unavailable" | "storage_unavailable", ...}}, never a 500, and the OpenAPI document
declares it so for every operation. One mapping in the app serves every blueprint (the intake keeps its
own 503, tested in tests/intake/)."""

from __future__ import annotations

import base64
import io
import tempfile
from pathlib import Path

import pytest
import sqlalchemy as sa
from werkzeug.test import EnvironBuilder

from tests.api.document_requests import body_of, declared_problems, documented_operations, url_of
from tests.fixtures.app import API_KEY_A, base_test_config
from tests.fixtures.services import free_port
from tests.media import samples
from tests.support.media_uploads import local, seed_000_body, seed_001_body
from tests.support.scratch_space import fill_scratch_space, remove_scratch_directory
from tests.support.standard import inbound_body, post_standard
from webhook_service.app import create_app
from webhook_service.database.tables import MediaUpload
from webhook_service.runtime import Runtime
from webhook_service.settings import load_settings

BEARER = {"Authorization": f"Bearer {API_KEY_A}"}


def _closed_postgres_port(tmp_path: Path) -> str:
    # Nothing listens there: every connection is refused at once.
    return f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing"


def _unreachable_sqlite_file(tmp_path: Path) -> str:
    # The engine makes the file's directory when it is built; a file takes the directory's place before
    # the first connection, so SQLite cannot open the database (as when a volume goes away).
    return f"sqlite:///{tmp_path / 'gone' / 'service.db'}"


@pytest.fixture(params=[_closed_postgres_port, _unreachable_sqlite_file], ids=["postgresql", "sqlite"])
def down_runtime(request, tmp_path):
    config = base_test_config(tmp_path / "data", request.param(tmp_path))
    # No spool, so that the intake's own 503 is seen too (with one, webhooks are spooled: test_spool.py).
    config["spool_max_bytes"] = 0
    runtime = Runtime(load_settings(environ={}, overrides=config))
    gone = tmp_path / "gone"
    if gone.is_dir():
        gone.rmdir()
        gone.write_bytes(b"not a directory")
    yield runtime
    runtime.close()


@pytest.fixture
def down_client(down_runtime):
    return create_app(runtime=down_runtime).test_client()


def _assert_unavailable(response, code: str) -> None:
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.get_json()["error"]["code"] == code
    assert response.get_json()["error"]["message"]
    assert int(response.headers["Retry-After"]) > 0


def test_every_documented_operation_answers_its_declared_503_while_the_database_is_down(down_client, down_runtime):
    """Every operation of the OpenAPI document reads the database. Called as a client would call it (valid
    credentials, body and path; the stable media URL signed), each answers 503 `unavailable` with
    Retry-After, and the document declares that 503, its header and the error body. The document lists
    the operations: one added later is called too."""
    document = down_client.get("/openapi.json").get_json()
    problems = []
    for operation in documented_operations(document):
        response = down_client.open(
            url_of(operation, down_runtime), method=operation.method, headers=BEARER, json=body_of(operation)
        )
        if response.status_code != 503 or response.get_json()["error"]["code"] != "unavailable":
            problems.append(f"{operation.name}: {response.status_code} {response.get_data()[:200]!r}")
        elif int(response.headers["Retry-After"]) <= 0:
            problems.append(f"{operation.name}: Retry-After {response.headers['Retry-After']}")
        if "Retry-After" not in operation.declared.get(503, {}).get("headers", {}):
            problems.append(f"{operation.name}: its 503 is declared without Retry-After")
        problems += declared_problems(operation, response)
    assert not problems, "\n".join(problems)


def test_an_upload_answers_503_while_the_database_is_down(down_client, down_runtime):
    body = seed_000_body(samples.pdf(2048), mimeType="application/pdf", fileName="terms.pdf")
    _assert_unavailable(down_client.post("/api/v1/media", json=body, headers=BEARER), "unavailable")
    # The blob stored before the record failed is removed again, and no scratch file is left.
    assert not any(path.is_file() for path in (down_runtime.settings.local_blob_dir / "objects").rglob("*"))
    assert list(down_runtime.work_dir.iterdir()) == []


def test_a_local_media_url_answers_503_while_the_blob_store_is_down(client, runtime):
    key = "tenant/2026/01/01/message/0"
    runtime.blob_store.put(key, io.BytesIO(samples.png()), content_type="image/png")
    url = local(runtime.blob_store.signed_url(key, expires_in=60).url)
    assert client.get(url).status_code == 200
    # The store's volume goes away: its objects directory is no longer one.
    objects = runtime.settings.local_blob_dir / "objects"
    (objects / key).unlink()
    for directory in sorted((path for path in objects.rglob("*") if path.is_dir()), reverse=True):
        directory.rmdir()
    objects.rmdir()
    objects.write_bytes(b"not a directory")
    _assert_unavailable(client.get(url), "storage_unavailable")


def test_authentication_still_comes_first_while_the_database_is_down(down_client):
    """Credentials are checked without the database: a wrong password is a 401, not a 503."""
    wrong = {"Authorization": "Basic " + base64.b64encode(b"nobody:wrong").decode()}
    assert down_client.get("/api/v1/messages", headers=wrong).status_code == 401


def test_the_intake_keeps_its_own_503(down_client):
    response = post_standard(down_client, inbound_body("m-outage"))
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.get_json()["error"]["code"] == "unavailable"
    assert response.headers["Retry-After"] and response.headers["X-Request-Id"]


@pytest.mark.parametrize(
    "failure", ["disk_full_while_receiving", "disk_full_while_re_encoding", "scratch_directory_gone"]
)
def test_an_upload_whose_scratch_file_cannot_be_written_answers_503(failure, client, runtime, monkeypatch, caplog):
    caplog.set_level("INFO", logger="webhook_service.media_api")
    work_dir = runtime.settings.data_dir / "tmp"
    if failure == "disk_full_while_receiving":
        fill_scratch_space(monkeypatch, work_dir)
    elif failure == "disk_full_while_re_encoding":
        fill_scratch_space(monkeypatch, work_dir, names="media-*")  # the re-encoded image's file
    else:
        remove_scratch_directory(work_dir)
    body = seed_001_body(samples.png(), fileName="logo.png", contentType="image/png", as_byte_values=False)
    response = client.post("/api/v1/media", json=body, headers=BEARER)
    _assert_unavailable(response, "storage_unavailable")
    [line] = [record for record in caplog.records if record.getMessage() == "media_upload"]
    assert (line.fields["outcome"], line.fields["status"]) == ("storage_unavailable", 503)
    with runtime.db.reading() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(MediaUpload)) == 0
    if work_dir.is_dir():
        assert list(work_dir.iterdir()) == []


def _multipart_upload(size: int) -> dict:
    """The environ of a multipart upload whose file part is larger than werkzeug keeps in memory (500 KB),
    encoded now (the test client encodes a large body in a temporary file of its own)."""
    data = {"file": (io.BytesIO(samples.pdf(size)), "terms.pdf", "application/pdf"), "phoneNumber": "+15551234567"}
    return EnvironBuilder("/api/v1/media", method="POST", headers=BEARER, data=data).get_environ()


def test_a_multipart_upload_whose_file_part_cannot_be_spooled_answers_503(client, runtime, monkeypatch):
    fill_scratch_space(monkeypatch, runtime.settings.data_dir / "tmp", names="part-*")  # the file part's spool
    _assert_unavailable(client.open(_multipart_upload(600_000)), "storage_unavailable")
    with runtime.db.reading() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(MediaUpload)) == 0


def test_an_unusable_system_temporary_directory_does_not_touch_a_multipart_upload(client, monkeypatch, tmp_path):
    """werkzeug spooled a large file part to the system's temporary directory, where a volume that is full
    or gone was a bare OSError and a 500; the upload's parts go to its own scratch directory. (A directory
    that is gone stands in: tempfile's unnamed files escape `fill_scratch_space`.)"""
    upload = _multipart_upload(600_000)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "gone"))
    response = client.open(upload)
    assert response.status_code == 201, response.get_data(as_text=True)
