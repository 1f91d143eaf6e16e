"""`storable` (database/tables.py): characters no database column can hold (NUL, unpaired surrogates)
replaced by U+FFFD, everything else as it was, in strings, lists and dicts, keys too."""

from __future__ import annotations

import pytest

from webhook_service.database.tables import storable


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("+15551234567", "+15551234567"),
        ("a\x00b", "a\ufffdb"),  # ASCII, but for the NUL
        ("Grüße 🚀", "Grüße 🚀"),
        ("é\x00", "é\ufffd"),
        ("\ud800x\udfff", "\ufffdx\ufffd"),
        ("", ""),
    ],
)
def test_strings(given, kept):
    assert storable(given) == kept


def test_lists_and_dicts_keys_too():
    assert storable({"k\x00": ["v\ud800", {"n": 1}], "ok": None}) == {"k\ufffd": ["v\ufffd", {"n": 1}], "ok": None}
