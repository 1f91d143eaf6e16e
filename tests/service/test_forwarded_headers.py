"""Forwarded headers are believed in one place only: the app's ProxyFix, as the `proxy` settings say.
Served the way the Procfile serves it (gunicorn with webhook_service.gunicorn_config), a request from
127.0.0.1 saying `X-Forwarded-Proto: https` must not change the URL a Twilio signature is checked against,
unless the configuration trusts one proxy for it."""

from __future__ import annotations

import requests

from tests.fixtures.app import TENANT_A
from tests.support.twilio import TWILIO_TOKEN, form_body, inbound_params, twilio_signature
from webhook_service.database.migrate import migrate


def serve(gunicorn, tmp_path, proxy_x_proto: int) -> str:
    database = f"sqlite:///{tmp_path / 'service.db'}"
    migrate(database)
    served = gunicorn(f"""
data_dir = "{tmp_path / "data"}"
database_url = "{database}"
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
    return served.base


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


def test_gunicorn_believes_no_forwarded_header_by_itself(gunicorn, tmp_path):
    base = serve(gunicorn, tmp_path, proxy_x_proto=0)
    plain = f"{base}/webhooks/twilio/main"
    assert post_signed_for(base, plain) == 200
    assert post_signed_for(base, plain.replace("http://", "https://")) == 401


def test_the_proxy_settings_decide_when_a_forwarded_scheme_counts(gunicorn, tmp_path):
    base = serve(gunicorn, tmp_path, proxy_x_proto=1)
    plain = f"{base}/webhooks/twilio/main"
    assert post_signed_for(base, plain.replace("http://", "https://")) == 200
    assert post_signed_for(base, plain) == 401
