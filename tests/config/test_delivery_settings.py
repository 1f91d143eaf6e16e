"""The `[delivery]` section: its defaults, one clear line for every bad setting, and declared endpoints
whose URLs the SSRF rules refuse stopping the service at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from webhook_service.config.model import ConfigError
from webhook_service.runtime import Runtime
from webhook_service.settings import load_settings

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TENANT = "[[tenants]]\nid='t'\n"


def _load(tmp_path: Path, toml: str):
    path = tmp_path / "service.toml"
    path.write_text(f"data_dir = '{tmp_path / 'data'}'\n" + toml)
    return load_settings(path, environ={})


def _endpoint(**fields: str) -> str:
    values = {"tenant": "'t'", "name": "'crm'", "url": "'https://hooks.example.com/in'", "secret": f"'{SECRET}'"}
    values.update(fields)
    return TENANT + "[[delivery.endpoints]]\n" + "\n".join(f"{key} = {value}" for key, value in values.items())


def test_defaults_are_svix_like(tmp_path):
    delivery = _load(tmp_path, "").delivery
    assert delivery.retry_schedule_seconds == [5, 300, 1800, 7200, 18000, 36000, 36000]
    assert (delivery.disable_after_hours, delivery.timeout_seconds) == (120, 15)
    assert (delivery.allow_http, delivery.allow_private_networks, delivery.endpoints) == (False, [], [])


BAD = [
    ("empty schedule", "[delivery]\nretry_schedule_seconds = []", "delivery.retry_schedule_seconds"),
    ("zero wait", "[delivery]\nretry_schedule_seconds = [5, 0]", "every wait must be positive"),
    ("timeout", "[delivery]\ntimeout_seconds = 0", "delivery.timeout_seconds"),
    ("network", "[delivery]\nallow_private_networks = ['10.0.0.0/33']", "delivery.allow_private_networks"),
    ("unknown tenant", _endpoint(tenant="'nope'"), "delivery.endpoints[0].tenant: unknown tenant 'nope'"),
    ("event type", _endpoint(event_types="['message.sent']"), "unknown event type 'message.sent'"),
    ("secret", _endpoint(secret="'whsec_c2hvcnQ='"), "delivery.endpoints[0].secret: must be whsec_"),
    (
        "duplicate",
        _endpoint() + f"\n[[delivery.endpoints]]\ntenant='t'\nname='crm'\nurl='https://x.example/'\nsecret='{SECRET}'",
        "delivery.endpoints[1]: duplicate tenant/name 't/crm'",
    ),
]


@pytest.mark.parametrize("label, toml, message", BAD, ids=[case[0] for case in BAD])
def test_a_bad_delivery_setting_is_one_line_naming_it(tmp_path, label, toml, message):
    with pytest.raises(ConfigError) as error:
        _load(tmp_path, toml)
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    "url, message",
    [
        ("'http://hooks.example.com/in'", "only https is allowed"),
        ("'https://user:pw@hooks.example.com/in'", "embedded credentials"),
        ("'file:///etc/passwd'", "Only http(s) endpoint URLs"),
    ],
)
def test_a_declared_endpoint_url_the_rules_refuse_stops_the_service(tmp_path, url, message):
    settings = _load(tmp_path, _endpoint(url=url))
    with pytest.raises(ConfigError) as error:
        Runtime(settings)
    assert str(error.value).startswith("delivery.endpoints[0].url: ") and message in str(error.value)


def test_plain_http_is_allowed_when_the_exemption_says_so(tmp_path):
    settings = _load(tmp_path, "[delivery]\nallow_http = true\n" + _endpoint(url="'http://hooks.example.com/in'"))
    Runtime(settings).close()
