"""Endpoint signing secrets as the database keeps them: sealed with AES-256-GCM under a key derived from the
service's `secret_key` (config/derived_keys.py). Whoever holds a secret can sign deliveries its consumer
accepts as ours, so a copy of the database alone (a backup, a replica, a dump attached to a ticket) must not
give them away; the key lives in the configuration (or `data_dir/secret_key`), not in the database.

A sealed value is `sealed:v1:` and the URL-safe base64 of a 96-bit random nonce and the ciphertext with its
tag. The endpoint's id is the associated data: a sealed secret copied onto another endpoint's row does not
open. Values kept in plain text before sealing existed (`whsec_...`) open as they are; the delivery sweep
seals them (`EndpointStore.seal_plain_secrets`).
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from webhook_service.config.derived_keys import derived_key

SEALED_PREFIX = "sealed:v1:"
_NONCE_BYTES = 12
# This use of secret_key (config/derived_keys.py).
_KEY_PURPOSE = "endpoint-signing-secrets-v1"


class SecretUnreadable(Exception):
    """A sealed secret that does not open: sealed under another secret_key, or altered."""


class EndpointSecrets:
    def __init__(self, secret_key: bytes):
        self._aead = AESGCM(derived_key(secret_key, _KEY_PURPOSE))

    def seal(self, endpoint_id: str, secret: str) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, secret.encode(), endpoint_id.encode())
        return SEALED_PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, endpoint_id: str, stored: str) -> str:
        """The secret a row keeps (sealed, or plain text from before). Raises SecretUnreadable."""
        if not is_sealed(stored):
            return stored
        try:
            data = base64.urlsafe_b64decode(stored.removeprefix(SEALED_PREFIX).encode())
            return self._aead.decrypt(data[:_NONCE_BYTES], data[_NONCE_BYTES:], endpoint_id.encode()).decode()
        except (InvalidTag, binascii.Error, ValueError) as error:
            raise SecretUnreadable(
                "the endpoint's signing secret does not open with this secret_key (it was sealed under another "
                "one, or altered): set the secret_key it was sealed with, or rotate the endpoint's secret"
            ) from error


def is_sealed(stored: str) -> bool:
    return stored.startswith(SEALED_PREFIX)
