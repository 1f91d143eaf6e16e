"""The one signer for URLs this service hands out and later checks (the local store's media URLs, an
upload's stable URL): an HMAC-SHA256, made and checked in constant time by itsdangerous.

What is signed is a JSON list, the purpose first, then the fields: JSON keeps the fields apart (nothing
moves from one field into the next, and an absent field, null, differs from an empty one), and the
purpose keeps a signature made for one kind of URL from ever passing as another. The signature is the
unpadded base64url of the MAC, 43 characters: the published URL formats depend on it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence

from itsdangerous import Signer
from itsdangerous.encoding import base64_decode, base64_encode

_SIGNATURE = re.compile(r"[A-Za-z0-9_-]{43}")  # unpadded base64url of 32 bytes
MIN_KEY_BYTES = 16


class UrlSigner:
    def __init__(self, keys: bytes | Sequence[bytes], purpose: str):
        """`keys`: one key, or several oldest first; the newest signs, any of them verifies (rotation)."""
        key_list = [keys] if isinstance(keys, bytes) else list(keys)
        if not key_list or any(not isinstance(key, bytes) or len(key) < MIN_KEY_BYTES for key in key_list):
            raise ValueError(f"signing keys must be at least {MIN_KEY_BYTES} random bytes")
        # key_derivation "none": the key is used as given, so signatures are plain HMAC-SHA256 of the
        # message and the published URLs stay what they were before itsdangerous signed them.
        self._signer = Signer(key_list, key_derivation="none", digest_method=hashlib.sha256)
        self._purpose = purpose

    def sign(self, *fields: str | int | None) -> str:
        return self._signer.get_signature(self._message(fields)).decode("ascii")

    def verify(self, signature: object, *fields: str | int | None) -> bool:
        """Whether `signature` signs these fields. False, never an exception, for anything malformed."""
        if not isinstance(signature, str) or not _SIGNATURE.fullmatch(signature):
            return False
        encoded = signature.encode("ascii")
        # The last of 43 characters carries two bits that decode to nothing, so four spellings decode to
        # the same MAC, and itsdangerous compares decoded bytes. Only the one spelling we make is a
        # signature: a link is either exactly as issued or refused.
        if base64_encode(base64_decode(encoded)) != encoded:
            return False
        return self._signer.verify_signature(self._message(fields), encoded)

    def _message(self, fields: tuple[str | int | None, ...]) -> bytes:
        # ensure_ascii: any character a client puts in a field becomes plain bytes.
        return json.dumps([self._purpose, *fields], separators=(",", ":")).encode("ascii")
