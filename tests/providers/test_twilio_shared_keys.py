"""Twilio's shared-key signatures (a Webhook Setting that signs with a SharedKey, HMAC-SHA256 or
HMAC-SHA1, named in X-Twilio-Webhooks-Signature-Settings) beside the auth token's HMAC-SHA1. Every
signature here is computed by the twilio package's own RequestValidator, as a client of Twilio's would
check it; the adapter must accept what it accepts and refuse the downgrades and mix-ups it could not see."""

from __future__ import annotations

import hashlib
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa
from twilio.request_validator import (
    HMAC_SHA1,
    HMAC_SHA256,
    SIGNATURE_SETTINGS_HEADER,
    RequestValidator,
    get_signature_algorithm,
)
from werkzeug.datastructures import Headers, MultiDict

from tests.fixtures.app import TENANT_A
from tests.providers.security_suite import assert_quiet_refusal, count
from tests.support.twilio import TWILIO_TOKEN, form_body, inbound_params
from webhook_service.config.model import ConfigError, Connection
from webhook_service.database.tables import Message, QuarantinedRequest
from webhook_service.providers import ADAPTERS, VerificationFailed, WebhookRequest
from webhook_service.settings import load_settings

ADAPTER = ADAPTERS["twilio"]
FORM = "application/x-www-form-urlencoded"
URL = "https://hooks.example.com/webhooks/twilio/main"
KEY_ID = "webhooks_sharedkey_01jz8w3m5k2q7r9t4v6x8y0b1c"
KEY_SECRET = "sharedkey-secret-current"
OLD_KEY_ID = "webhooks_sharedkey_01jz8w3m5k2q7r9t4v6x8y0zzz"
OLD_KEY_SECRET = "sharedkey-secret-previous"
SHA1_KEY_ID = "webhooks_sharedkey_sha1"
SHA1_KEY_SECRET = "sharedkey-secret-sha1"
SHARED_KEYS = [
    {"id": KEY_ID, "secret": KEY_SECRET},  # HMAC_SHA256 unless said otherwise
    {"id": OLD_KEY_ID, "secret": OLD_KEY_SECRET, "algorithm": "HMAC_SHA256"},
    {"id": SHA1_KEY_ID, "secret": SHA1_KEY_SECRET, "algorithm": "HMAC_SHA1"},
]
PARAMS = inbound_params()


def _connection(shared_keys=SHARED_KEYS) -> Connection:
    return Connection(provider="twilio", name="t", secrets=[TWILIO_TOKEN], options={"shared_keys": shared_keys})


def _signature(secret: str, algorithm: str | None = None, *, url: str = URL, params=PARAMS) -> str:
    """What Twilio sends, as the twilio package computes it (the validator checks exactly this)."""
    return RequestValidator(secret).compute_signature(url, MultiDict(params), algorithm)


def _settings(key_id: str | None = KEY_ID, algorithm: str | None = HMAC_SHA256) -> str:
    parts = [f"key={key_id}"] if key_id is not None else []
    return ",".join([*parts, *([f"algorithm={algorithm}"] if algorithm is not None else [])])


def _request(signature: str, settings: str | list[str] | None = None, *, url: str = URL, body: bytes | None = None):
    headers = Headers({"Content-Type": FORM, "X-Twilio-Signature": signature})
    for value in [settings] if isinstance(settings, str) else settings or []:
        headers.add(SIGNATURE_SETTINGS_HEADER, value)
    return WebhookRequest(method="POST", url=url, headers=headers, body=form_body(PARAMS) if body is None else body)


def _refusal(request: WebhookRequest, connection: Connection | None = None) -> str:
    with pytest.raises(VerificationFailed) as failure:
        ADAPTER.verify(request, connection or _connection())
    return failure.value.code


def _package_accepts(request: WebhookRequest, secret: str) -> bool:
    """The twilio package's own verdict on a request, given the secret its caller would pick."""
    algorithm = get_signature_algorithm(request.headers.get(SIGNATURE_SETTINGS_HEADER))
    return RequestValidator(secret).validate(
        request.url, MultiDict(PARAMS), request.headers["X-Twilio-Signature"], algorithm
    )


class TestAccepted:
    def test_hmac_sha256_with_the_named_shared_key(self):
        request = _request(_signature(KEY_SECRET, HMAC_SHA256), _settings())
        assert _package_accepts(request, KEY_SECRET)
        ADAPTER.verify(request, _connection())

    def test_hmac_sha1_with_the_auth_token_and_no_settings_header(self):
        request = _request(_signature(TWILIO_TOKEN))
        assert _package_accepts(request, TWILIO_TOKEN)
        ADAPTER.verify(request, _connection())

    def test_hmac_sha1_with_a_shared_key_configured_for_it(self):
        ADAPTER.verify(
            _request(_signature(SHA1_KEY_SECRET, HMAC_SHA1), _settings(SHA1_KEY_ID, HMAC_SHA1)), _connection()
        )

    def test_rotation_either_key_by_its_id(self):
        ADAPTER.verify(_request(_signature(KEY_SECRET, HMAC_SHA256), _settings(KEY_ID)), _connection())
        ADAPTER.verify(_request(_signature(OLD_KEY_SECRET, HMAC_SHA256), _settings(OLD_KEY_ID)), _connection())

    def test_settings_without_a_key_id_try_the_keys_of_that_algorithm(self):
        ADAPTER.verify(_request(_signature(OLD_KEY_SECRET, HMAC_SHA256), _settings(None)), _connection())

    def test_the_header_read_as_the_package_reads_it(self):
        """Spaces around the parts, the algorithm in lower case, and names Twilio may add later."""
        settings = f" key = {KEY_ID} , algorithm = hmac_sha256 , version=2 "
        request = _request(_signature(KEY_SECRET, HMAC_SHA256), settings)
        assert _package_accepts(request, KEY_SECRET)
        ADAPTER.verify(request, _connection())

    def test_port_forms_like_the_package(self):
        signed = _signature(KEY_SECRET, HMAC_SHA256, url="https://hooks.example.com:443/webhooks/twilio/main")
        ADAPTER.verify(_request(signed, _settings()), _connection())

    def test_a_json_body_signed_with_its_hash(self):
        body = b'{"MessageSid": "SM1", "Body": "hi", "SmsStatus": "received"}'
        url = f"{URL}?bodySHA256={hashlib.sha256(body).hexdigest()}"
        signature = RequestValidator(KEY_SECRET).compute_signature(url, {}, HMAC_SHA256)
        request = WebhookRequest(
            method="POST",
            url=url,
            headers=Headers(
                {
                    "Content-Type": "application/json",
                    "X-Twilio-Signature": signature,
                    SIGNATURE_SETTINGS_HEADER: _settings(),
                }
            ),
            body=body,
        )
        assert RequestValidator(KEY_SECRET).validate(url, body.decode(), signature, HMAC_SHA256)
        ADAPTER.verify(request, _connection())


class TestRefused:
    def test_hmac_sha256_made_with_the_wrong_key(self):
        request = _request(_signature("not-the-shared-key", HMAC_SHA256), _settings())
        assert not _package_accepts(request, KEY_SECRET)
        assert _refusal(request) == "invalid_signature"

    def test_another_configured_keys_signature_under_this_keys_id(self):
        assert _refusal(_request(_signature(OLD_KEY_SECRET, HMAC_SHA256), _settings(KEY_ID))) == "invalid_signature"

    def test_the_auth_token_never_signs_under_the_settings_header(self):
        for algorithm in (HMAC_SHA256, HMAC_SHA1):
            request = _request(_signature(TWILIO_TOKEN, algorithm), _settings(KEY_ID, algorithm))
            assert _refusal(request) in ("invalid_signature", "signature_algorithm_mismatch")

    def test_a_shared_key_never_signs_without_the_settings_header(self):
        """Key separation: dropping the header turns the request into an auth-token one."""
        for secret, algorithm in ((KEY_SECRET, HMAC_SHA256), (KEY_SECRET, HMAC_SHA1), (SHA1_KEY_SECRET, HMAC_SHA1)):
            assert _refusal(_request(_signature(secret, algorithm))) == "invalid_signature"

    def test_downgrade_to_hmac_sha1_for_a_sha256_key(self):
        """The settings header is not signed: a request may claim any algorithm. A key answers only to
        the algorithm its Webhook Setting uses, even when the signature is genuine for the claim."""
        request = _request(_signature(KEY_SECRET, HMAC_SHA1), _settings(KEY_ID, HMAC_SHA1))
        assert _package_accepts(request, KEY_SECRET)  # the package alone would take it
        assert _refusal(request) == "signature_algorithm_mismatch"

    def test_settings_without_an_algorithm_mean_hmac_sha1(self):
        request = _request(_signature(KEY_SECRET, HMAC_SHA1), _settings(KEY_ID, None))
        assert _refusal(request) == "signature_algorithm_mismatch"

    def test_a_sha1_signature_claimed_as_sha256(self):
        assert _refusal(_request(_signature(KEY_SECRET, HMAC_SHA1), _settings())) == "invalid_signature"

    def test_an_unknown_key_id(self):
        request = _request(_signature(KEY_SECRET, HMAC_SHA256), _settings("webhooks_sharedkey_unknown"))
        assert _refusal(request) == "unknown_shared_key"

    def test_a_connection_without_shared_keys(self):
        request = _request(_signature(KEY_SECRET, HMAC_SHA256), _settings())
        assert _refusal(request, _connection(shared_keys=[])) == "unknown_shared_key"
        assert (
            _refusal(_request(_signature(KEY_SECRET), _settings(None, None)), _connection([])) == "unknown_shared_key"
        )

    @pytest.mark.parametrize("algorithm", ["HMAC_MD5", "HMAC_SHA512", "SHA256", "none", "é" * 40])
    def test_an_unsupported_algorithm(self, algorithm):
        request = _request(_signature(KEY_SECRET, HMAC_SHA256), _settings(KEY_ID, algorithm))
        assert _refusal(request) == "unsupported_signature_algorithm"

    @pytest.mark.parametrize(
        "settings",
        [
            f"key={KEY_ID},algorithm=HMAC_SHA1,algorithm=HMAC_SHA256",  # the package would take the first
            f"key={KEY_ID},key={OLD_KEY_ID},algorithm=HMAC_SHA256",
            f"key={KEY_ID};algorithm=HMAC_SHA256",
            "key=,algorithm=HMAC_SHA256",
            "HMAC_SHA256",
            "=HMAC_SHA256",
            f"key={KEY_ID},algorithm=HMAC_SHA256," + "x=" + "y" * 600,
            [_settings(), _settings(OLD_KEY_ID)],
        ],
    )
    def test_malformed_settings(self, settings):
        assert _refusal(_request(_signature(KEY_SECRET, HMAC_SHA256), settings)) == "malformed_signature_settings"

    def test_a_tampered_body(self):
        tampered = form_body([*PARAMS, ("Body", "changed")])
        request = _request(_signature(KEY_SECRET, HMAC_SHA256), _settings(), body=tampered)
        assert _refusal(request) == "invalid_signature"


class TestConfiguration:
    def _load(self, tmp_path, connection: dict):
        config = {"environment": "development", "data_dir": str(tmp_path), "connections": [connection]}
        return load_settings(environ={}, overrides=config)

    def test_keys_are_checked_at_start(self, tmp_path):
        connection = {"provider": "twilio", "tenant": TENANT_A, "secrets": [TWILIO_TOKEN]}
        self._load(tmp_path, {**connection, "options": {"shared_keys": SHARED_KEYS}})
        refused = [
            {"shared_keys": [{"id": KEY_ID, "secret": KEY_SECRET, "algorithm": "HMAC_MD5"}]},
            {"shared_keys": [{"id": KEY_ID, "secret": ""}]},
            {"shared_keys": [{"id": "a,b", "secret": KEY_SECRET}]},
            {"shared_keys": [{"id": KEY_ID, "secret": "one"}, {"id": KEY_ID, "secret": "two"}]},
            {"shared_keys": [{"id": KEY_ID, "secret": KEY_SECRET, "hash": "x"}]},
            {"signing": "x"},
        ]
        for options in refused:
            with pytest.raises(ConfigError, match="options"):
                self._load(tmp_path, {**connection, "options": options})

    def test_shared_keys_need_the_auth_token(self, tmp_path):
        """Without secrets the intake would not verify at all (a basic_auth-only connection)."""
        connection = {"provider": "twilio", "tenant": TENANT_A, "basic_auth": ["hook:pw"]}
        with pytest.raises(ConfigError, match="auth token"):
            self._load(tmp_path, {**connection, "options": {"shared_keys": SHARED_KEYS}})


@pytest.fixture
def settings_overrides():
    return {
        "public_base_url": "https://hooks.example.com",
        "connections": [
            {
                "provider": "twilio",
                "name": "main",
                "tenant": TENANT_A,
                "secrets": [TWILIO_TOKEN],
                "options": {"shared_keys": SHARED_KEYS},
            }
        ],
    }


class TestThroughTheIntake:
    def _post(self, client, signature: str, settings: str | None):
        headers = {"X-Twilio-Signature": signature}
        if settings is not None:
            headers[SIGNATURE_SETTINGS_HEADER] = settings
        return client.post("/webhooks/twilio/main", data=urlencode(PARAMS), headers=headers, content_type=FORM)

    def test_shared_key_and_auth_token_requests_are_stored(self, client, runtime):
        assert self._post(client, _signature(KEY_SECRET, HMAC_SHA256), _settings()).status_code == 200
        assert self._post(client, _signature(TWILIO_TOKEN), None).status_code == 200
        assert count(runtime, Message) == 1  # the same MessageSid: the second is a duplicate

    def test_a_wrong_key_is_a_quiet_401_kept_with_its_reason(self, client, runtime):
        assert_quiet_refusal(self._post(client, _signature("wrong", HMAC_SHA256), _settings()))
        assert_quiet_refusal(self._post(client, _signature(KEY_SECRET, HMAC_SHA1), _settings(KEY_ID, HMAC_SHA1)))
        with runtime.db.reading() as session:
            rows = session.scalars(sa.select(QuarantinedRequest).order_by(QuarantinedRequest.id)).all()
        assert [row.reason_code for row in rows] == ["invalid_signature", "signature_algorithm_mismatch"]
        assert count(runtime, Message) == 0
