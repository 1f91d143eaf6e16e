"""The seeds' own upload clients, run unchanged apart from the host name against the app served over
real HTTP: seed 001's Python (`requests`, byte array), curl (base64 with raw line breaks in the JSON) and
Node (axios, byte array) examples, seed 000's curl example, curl -F, and the request C#'s serializer
makes. Each uploaded file is then fetched through the URL the client read."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from PIL import Image

from tests.api.seed_examples import (
    SEED_000_CURL,
    SEED_000_DATA_PLACEHOLDER,
    SEED_001_CURL,
    SEED_001_NODE,
    SEED_001_PYTHON,
    SEED_HOST,
)
from tests.fixtures.app import NUMBER_A, TENANT_A, USER_A
from tests.fixtures.services import service_unavailable
from tests.media import samples

ROOT = Path(__file__).resolve().parents[2]
IMAGE_SIZE = (320, 240)
CLIENT_TIMEOUT = 60


@pytest.fixture
def seed_dir(tmp_path) -> Path:
    """Where a seed's example runs: a directory holding image.jpg, a real JPEG photo with metadata."""
    directory = tmp_path / "client"
    directory.mkdir()
    (directory / "image.jpg").write_bytes(samples.encode(samples.photo(IMAGE_SIZE), "JPEG", quality=90))
    return directory


def run(command: list[str], directory: Path, **environment: str) -> str:
    finished = subprocess.run(
        command,
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT,
        env={**os.environ, **environment},
    )
    assert finished.returncode == 0, finished.stderr
    return finished.stdout


def assert_serves_the_image(url: str) -> None:
    response = requests.get(url, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "image/jpeg"
    assert Image.open(io.BytesIO(response.content)).size == IMAGE_SIZE


def uploaded_url(output: str) -> str:
    prefix = "Uploaded: "
    assert output.startswith(prefix), output
    return output[len(prefix) :].strip()


class TestSeed001:
    def test_python_example(self, live_server, seed_dir):
        script = SEED_001_PYTHON.replace(SEED_HOST, live_server)
        url = uploaded_url(run([sys.executable, "-c", script], seed_dir))
        assert url.startswith(f"{live_server}/media/")
        assert_serves_the_image(url)
        ranged = requests.get(url, headers={"Range": "bytes=0-1"}, timeout=10)
        assert (ranged.status_code, ranged.content) == (206, b"\xff\xd8")

    def test_curl_example(self, live_server, seed_dir):
        script = SEED_001_CURL.replace(SEED_HOST, live_server)
        answer = json.loads(run(["bash", "-c", script], seed_dir))
        assert answer["fileName"] == "product-image.jpg" and answer["contentType"] == "image/jpeg"
        assert_serves_the_image(answer["uri"])

    def test_node_example(self, live_server, seed_dir):
        node = shutil.which("node")
        axios = ROOT / "node_modules" / "axios"
        if node is None or not axios.is_dir():
            service_unavailable("Node with axios", "run `npm install` at the repository root")
        script = SEED_001_NODE.replace(SEED_HOST, live_server)
        output = run([node, "-e", script], seed_dir, NODE_PATH=str(ROOT / "node_modules"))
        assert_serves_the_image(uploaded_url(output))

    def test_csharp_request(self, live_server, seed_dir):
        """What seed 001's C# example sends: PostAsJsonAsync's web defaults name the properties in
        camelCase and serialize byte[] as base64; it reads `result.Uri` case-insensitively."""
        image = (seed_dir / "image.jpg").read_bytes()
        body = {
            "phoneNumber": NUMBER_A,
            "fileName": "product-image.jpg",
            "contentType": "image/jpeg",
            "data": base64.b64encode(image).decode(),
            "tenantId": TENANT_A,
        }
        response = requests.post(f"{live_server}/api/v1/media", json=body, auth=USER_A, timeout=CLIENT_TIMEOUT)
        assert response.status_code == 201
        assert_serves_the_image(response.json()["uri"])


class TestSeed000:
    def test_curl_example(self, live_server, seed_dir):
        image = base64.b64encode((seed_dir / "image.jpg").read_bytes()).decode()
        script = SEED_000_CURL.replace(SEED_HOST, live_server).replace(SEED_000_DATA_PLACEHOLDER, image)
        answer = json.loads(run(["bash", "-c", script], seed_dir))
        assert (answer["fileName"], answer["mimeType"]) == ("product-image.jpg", "image/jpeg")
        assert answer["expiresAt"].endswith("Z")
        assert_serves_the_image(answer["url"])


class TestOtherClients:
    def test_curl_multipart(self, live_server, seed_dir):
        script = (
            f'curl -sS -X POST {live_server}/api/v1/media -u "your-email@example.com:your-password" '
            '-F "file=@image.jpg" -F "phoneNumber=+15551234567"'
        )
        answer = json.loads(run(["bash", "-c", script], seed_dir))
        assert (answer["fileName"], answer["declaredContentType"]) == ("image.jpg", "image/jpeg")
        assert_serves_the_image(answer["url"])

    def test_stable_url_followed_by_requests(self, live_server, seed_dir):
        image = (seed_dir / "image.jpg").read_bytes()
        body = {"phoneNumber": NUMBER_A, "fileName": "photo.jpg", "data": base64.b64encode(image).decode()}
        answer = requests.post(f"{live_server}/api/v1/media", json=body, auth=USER_A, timeout=CLIENT_TIMEOUT).json()
        assert answer["stableUrl"].startswith(f"{live_server}/m/")
        assert_serves_the_image(answer["stableUrl"])

    def test_requests_reads_the_413_for_a_7_mb_payload(self, live_server):
        body = {
            "phoneNumber": NUMBER_A,
            "fileName": "big.pdf",
            "data": base64.b64encode(samples.pdf(7 * 1024 * 1024)).decode(),
        }
        response = requests.post(f"{live_server}/api/v1/media", json=body, auth=USER_A, timeout=CLIENT_TIMEOUT)
        assert response.status_code == 413
        assert response.json()["error"]["message"] == "Media file exceeds maximum size of 5MB"
