"""The URL signer: one spelling of a signature, key rotation, purposes kept apart."""

from __future__ import annotations

import base64

from storage.signing import UrlSigner

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
KEY = b"0123456789abcdef0123456789abcdef"


def other_spellings(signature: str) -> list[str]:
    """The signature with its last character's two unused bits changed: the same 32 bytes once decoded."""
    last = _ALPHABET.index(signature[-1])
    return [
        signature[:-1] + _ALPHABET[(last & ~0b11) | bits]
        for bits in range(4)
        if _ALPHABET[(last & ~0b11) | bits] != signature[-1]
    ]


def decoded(signature: str) -> bytes:
    return base64.urlsafe_b64decode(signature + "=")


def test_a_signature_verifies_only_as_issued():
    signer = UrlSigner(KEY, "test/v1")
    signature = signer.sign("key", 1700000000, None)
    assert signer.verify(signature, "key", 1700000000, None)
    spellings = other_spellings(signature)
    assert len(spellings) == 3 and all(decoded(other) == decoded(signature) for other in spellings)
    assert not any(signer.verify(other, "key", 1700000000, None) for other in spellings)


def test_rotation_and_purposes():
    old, new = b"old-key-0123456789abcdef", b"new-key-0123456789abcdef"
    issued_before = UrlSigner(old, "test/v1").sign("key")
    rotated = UrlSigner([old, new], "test/v1")
    assert rotated.verify(issued_before, "key")  # links issued before the rotation keep working
    assert rotated.sign("key") == UrlSigner(new, "test/v1").sign("key")  # new links use the new key
    assert not UrlSigner(new, "test/v1").verify(issued_before, "key")
    assert not UrlSigner(old, "other/v1").verify(issued_before, "key")


def test_malformed_signatures_are_refused_not_raised():
    signer = UrlSigner(KEY, "test/v1")
    for signature in (None, 42, "", "A" * 42, "A" * 44, "é" * 43, "=" * 43, "A" * 42 + "="):
        assert signer.verify(signature, "key") is False
