"""The signatures deliveries carry, against the Standard Webhooks specification's own example and its
definition (HMAC-SHA256 over the UTF-8 of "{id}.{timestamp}.{body}"), for a body that is not ASCII too;
and a receiver using the official library verifies them, through the intake's own Standard Webhooks
adapter (which signs text, as every release of the library does)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

from werkzeug.datastructures import Headers

from webhook_service.config.model import Connection
from webhook_service.delivery.signing import Signer, new_secret
from webhook_service.providers import ADAPTERS, WebhookRequest

# The specification's example (tests/providers/test_standard.py checks the intake against it).
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
WEBHOOK_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SIGNED_AT = datetime.fromtimestamp(1614265330, UTC)


def test_the_specifications_example():
    header = Signer(SECRET).header(WEBHOOK_ID, SIGNED_AT, b'{"test": 2432232314}')
    assert header == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_a_body_that_is_not_ascii_is_signed_as_its_utf8_bytes():
    body = '{"text": "Grüße ✓ 你好 🙂"}'.encode()
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    content = f"{WEBHOOK_ID}.{int(SIGNED_AT.timestamp())}.".encode() + body
    expected = "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    assert Signer(SECRET).header(WEBHOOK_ID, SIGNED_AT, body) == expected


def test_both_signatures_of_a_rotation_verify_at_a_receiver():
    current, previous = new_secret(), new_secret()
    now = datetime.now(UTC)
    body = '{"type": "message.received", "data": {"text": "é"}}'.encode()
    header = Signer(current, previous, now + timedelta(hours=1)).header("evt_1_2", now, body)
    assert len(header.split(" ")) == 2
    for secret in (current, previous):
        connection = Connection(provider="standard", name="consumer", secrets=[secret])
        request = WebhookRequest(
            method="POST",
            url="https://consumer.example/hooks",
            headers=Headers(
                {"webhook-id": "evt_1_2", "webhook-timestamp": str(int(now.timestamp())), "webhook-signature": header}
            ),
            body=body,
            received_at=now,
            remote_addr="127.0.0.1",
        )
        ADAPTERS["standard"].verify(request, connection)  # raises VerificationFailed if no signature matches
