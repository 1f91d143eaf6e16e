"""Seed 001's own download code, Python and Node, run unchanged on the attachments of messages received
from Twilio, Telnyx, Vonage and Plivo. None of those providers names its media, and the examples save
each file as `Path('downloads') / attachment['name']` and `path.join(dir, attachment.name)`: with a
null name both crashed. Every attachment now has a safe file name (model/file_names.py), so the examples
save every file, under that name, inside `downloads/`, and nowhere else.

The webhooks go through the real intake (unsigned development connections), the media come from the
loopback media server through the real pipeline into the local store, and the clients read the
messages and fetch the files over real HTTP."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests

from tests.api.seed_examples import SEED_001_NODE_DOWNLOAD, SEED_001_PYTHON_DOWNLOAD
from tests.fixtures.app import TENANT_A, USER_A
from tests.fixtures.media_server import loopback_resolver
from tests.fixtures.services import service_unavailable
from tests.media import samples
from tests.support import plivo, telnyx, twilio, vonage

ROOT = Path(__file__).resolve().parents[2]
CLIENT_TIMEOUT = 60
FORM = "application/x-www-form-urlencoded"
PROVIDERS = ("twilio", "telnyx", "vonage", "plivo")

# The seed's loop over `message.attachments`, around its download function.
PYTHON_HARNESS = """
import json, sys
message = json.load(sys.stdin)
for attachment in message.get('attachments', []):
    file_path = download_media(attachment)
"""
NODE_HARNESS = """
const message = JSON.parse(fs.readFileSync(0, 'utf8'));
(async () => {
for (const attachment of message.attachments || []) {
const filePath = await downloadMedia(attachment);
}
})();
"""


@pytest.fixture
def settings_overrides():
    return {
        # Each webhook's request runs the first download attempt inline.
        "queue": {"immediate": True},
        "media": {"fetch": {"allow_http": True, "allow_private_hosts": ["media.test"]}},
        "connections": [
            {"provider": provider, "name": "open", "tenant": TENANT_A, "verify": False} for provider in PROVIDERS
        ],
    }


@pytest.fixture
def resolver():
    return loopback_resolver()


def _media(media_server, path: str, body: bytes, content_type: str) -> str:
    return media_server.serve(path, body, content_type=content_type)


def _receive(client, media_server, provider: str) -> str:
    """Post one inbound MMS of `provider`, its media named as that provider names them (that is, not at
    all); returns the provider's message id."""
    jpeg, png, pdf = samples.jpeg(), samples.png(), samples.pdf()
    if provider == "twilio":
        sid = "MM" + "ab" * 16
        base = f"/2010-04-01/Accounts/{twilio.ACCOUNT_SID}/Messages/{sid}/Media"
        media = [
            (_media(media_server, f"{base}/ME{'01' * 16}", jpeg, "image/jpeg"), "image/jpeg"),
            (_media(media_server, f"{base}/ME{'02' * 16}", png, "image/png"), "image/png"),
        ]
        body = twilio.form_body(twilio.inbound_params(sid, media=media))
        response = client.post("/webhooks/twilio/open", data=body, content_type=FORM)
        message_id = sid
    elif provider == "telnyx":
        message_id = "b0c7e8cb-6227-4c74-9f32-c7f80c30934b"
        media = [
            {"url": _media(media_server, "/v2/media/7c1f", jpeg, "image/jpeg"), "content_type": "image/jpeg"},
            # A URL whose last segment is a path: its name must not be.
            {"url": _media(media_server, "/v2/media/..%2F..%2Fevil", pdf, "application/pdf"), "content_type": None},
        ]
        payload = telnyx.message_payload(
            message_id,
            direction="inbound",
            sender="+15550001111",
            recipients=[("+15551234567", "webhook_delivered")],
            media=media,
            message_type="MMS",
        )
        body = telnyx.event_body("message.received", payload)
        response = client.post("/webhooks/telnyx/open", data=body, content_type="application/json")
    elif provider == "vonage":
        message_id = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
        url = _media(media_server, "/v3/media/c1c2c3c4-0000-4000-8000-000000000001", jpeg, "image/jpeg")
        body = vonage.messages_inbound(message_id, channel="mms", message_type="image", text=None, media={"url": url})
        response = client.post("/webhooks/vonage/open", data=body, content_type="application/json")
    else:
        message_id = "1e2f3a4b-0000-4000-8000-0000000000aa"
        urls = [
            _media(media_server, "/Accounts/MA0001/Message/m1/Media/ME0001", png, "image/png"),
            _media(media_server, "/Accounts/MA0001/Message/m1/Media/", jpeg, "image/jpeg"),  # no last segment
        ]
        body = urlencode(plivo.inbound_params(message_id, media=urls)).encode()
        response = client.post("/webhooks/plivo/open", data=body, content_type=FORM)
    assert response.status_code == 200, response.get_data(as_text=True)
    return message_id


def _message(live_server: str, provider: str, message_id: str) -> dict:
    response = requests.get(
        f"{live_server}/api/v1/providers/{provider}/messages/{message_id}", auth=USER_A, timeout=CLIENT_TIMEOUT
    )
    assert response.status_code == 200, response.text
    message = response.json()
    assert message["attachments"] and all(a["status"] == "stored" for a in message["attachments"]), message
    return message


def _run(command: list[str], directory: Path, message: dict, **environment: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        command,
        cwd=directory,
        input=json.dumps(message),
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT,
        env={**os.environ, **environment},
    )


def _python(directory: Path, message: dict) -> subprocess.CompletedProcess:
    return _run([sys.executable, "-c", SEED_001_PYTHON_DOWNLOAD + PYTHON_HARNESS], directory, message)


def _node(directory: Path, message: dict) -> subprocess.CompletedProcess:
    node = shutil.which("node")
    if node is None or not (ROOT / "node_modules" / "axios").is_dir():
        service_unavailable("Node with axios", "run `npm install` at the repository root")
    assert node is not None
    script = SEED_001_NODE_DOWNLOAD + NODE_HARNESS
    return _run([node, "-e", script], directory, message, NODE_PATH=str(ROOT / "node_modules"))


def _assert_saved_under_their_names(directory: Path, message: dict, finished: subprocess.CompletedProcess) -> None:
    assert finished.returncode == 0, finished.stderr
    names = [attachment["name"] for attachment in message["attachments"]]
    assert len(set(names)) == len(names)
    saved = sorted(str(path.relative_to(directory)) for path in directory.rglob("*") if path.is_file())
    assert saved == sorted(f"downloads/{name}" for name in names), "every file in downloads/, nothing elsewhere"
    assert finished.stdout.splitlines() == [f"Downloaded: {os.path.join('downloads', name)}" for name in names]
    for attachment in message["attachments"]:
        content = (directory / "downloads" / attachment["name"]).read_bytes()
        assert len(content) == attachment["size"]


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("client_name", ["python", "node"])
def test_the_seed_download_examples_save_every_attachment(
    client, live_server, media_server, tmp_path, provider, client_name
):
    message = _message(live_server, provider, _receive(client, media_server, provider))
    directory = tmp_path / "consumer"
    directory.mkdir()
    finished = (_python if client_name == "python" else _node)(directory, message)
    _assert_saved_under_their_names(directory, message, finished)


def test_the_names_each_provider_gets(client, live_server, media_server):
    """From the URL's last segment with the sniffed type's extension, else attachment-<index>."""
    names = {
        provider: [
            a["name"] for a in _message(live_server, provider, _receive(client, media_server, provider))["attachments"]
        ]
        for provider in PROVIDERS
    }
    assert names == {
        "twilio": [f"ME{'01' * 16}.jpg", f"ME{'02' * 16}.png"],
        "telnyx": ["7c1f.jpg", "evil.pdf"],
        "vonage": ["c1c2c3c4-0000-4000-8000-000000000001.jpg"],
        "plivo": ["ME0001.png", "attachment-1.jpg"],
    }


def test_a_null_name_is_what_crashed_them(client, live_server, media_server, tmp_path):
    """The examples as they fail on what these providers' attachments used to carry."""
    message = _message(live_server, "twilio", _receive(client, media_server, "twilio"))
    nameless = {**message, "attachments": [{**a, "name": None} for a in message["attachments"]]}
    crashed = _python(tmp_path, nameless)
    assert crashed.returncode != 0 and "TypeError" in crashed.stderr
