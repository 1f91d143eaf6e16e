"""Forwarded headers are believed in one place only: the app's ProxyFix, as the `proxy` settings say.
Served the way the Procfile serves it (gunicorn with webhook_service.gunicorn_config), a request from
127.0.0.1 saying `X-Forwarded-Proto: https` must not change the URL a Twilio signature is checked against,
unless the configuration trusts one proxy for it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import requests

from tests.fixtures.app import TENANT_A
from tests.fixtures.services import free_port
from tests.support.twilio import TWILIO_TOKEN, form_body, inbound_params, twilio_signature
from webhook_service.database.migrate import migrate


def serve(tmp_path, proxy_x_proto: int) -> tuple[str, subprocess.Popen[str]]:
    port = free_port()
    database = f"sqlite:///{tmp_path / 'service.db'}"
    migrate(database)
    config = tmp_path / "service.toml"
    config.write_text(f"""
data_dir = "{tmp_path / "data"}"
database_url = "{database}"
port = {port}
web_workers = 1
web_threads = 2
[proxy]
x_proto = {proxy_x_proto}
[[tenants]]
id = "{TENANT_A}"
[[connections]]
provider = "twilio"
name = "main"
tenant = "{TENANT_A}"
secrets = ["{TWILIO_TOKEN}"]
""")
    environment = dict(os.environ, WEBHOOK_SERVICE_CONFIG=str(config))
    environment.pop("FORWARDED_ALLOW_IPS", None)  # gunicorn's own default would trust 127.0.0.1
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--config",
            "python:webhook_service.gunicorn_config",
            "webhook_service.wsgi:app",
        ],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"gunicorn exited: {process.stderr.read()[-2000:]}")
        try:
            requests.get(f"{base}/healthz", timeout=1)
            return base, process
        except requests.RequestException:
            time.sleep(0.2)
    raise AssertionError("gunicorn did not start")


@pytest.fixture
def gunicorn(tmp_path):
    started: list[subprocess.Popen[str]] = []

    def start(proxy_x_proto: int) -> str:
        base, process = serve(tmp_path, proxy_x_proto)
        started.append(process)
        return base

    yield start
    for process in started:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def post_signed_for(base: str, signed_url: str) -> int:
    params = inbound_params()
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": twilio_signature(signed_url, params),
        "X-Forwarded-Proto": "https",
    }
    return requests.post(
        f"{base}/webhooks/twilio/main", data=form_body(params), headers=headers, timeout=10
    ).status_code


def test_gunicorn_believes_no_forwarded_header_by_itself(gunicorn):
    base = gunicorn(proxy_x_proto=0)
    plain = f"{base}/webhooks/twilio/main"
    assert post_signed_for(base, plain) == 200
    assert post_signed_for(base, plain.replace("http://", "https://")) == 401


def test_the_proxy_settings_decide_when_a_forwarded_scheme_counts(gunicorn):
    base = gunicorn(proxy_x_proto=1)
    plain = f"{base}/webhooks/twilio/main"
    assert post_signed_for(base, plain.replace("http://", "https://")) == 200
    assert post_signed_for(base, plain) == 401
