import pytest

from storage import validate_key
from storage.keys import MAX_KEY_LENGTH, normalize_prefix

VALID_KEYS = [
    "tenant/2026/11/21/7d0e4b8e-52a4-4c1e-9f0c-2b7a7c4b1e55/0",
    "a",
    "a.b-c_D9",
    "...a/b..",
    "x" * MAX_KEY_LENGTH,
]

INVALID_KEYS = [
    "",
    "../x",
    "a/../b",
    "..",
    ".",
    "a/./b",
    "/abs",
    "a//b",
    "a/",
    "a b",
    "a\x00b",
    "a\n",
    "a\\b",
    "caf\u00e9",
    "a%2fb",
    "x" * (MAX_KEY_LENGTH + 1),
]


@pytest.mark.parametrize("key", VALID_KEYS)
def test_valid_keys_are_returned_unchanged(key):
    assert validate_key(key) == key


@pytest.mark.parametrize("key", INVALID_KEYS)
def test_invalid_keys_are_refused(key):
    with pytest.raises(ValueError):
        validate_key(key)


@pytest.mark.parametrize("key", [None, b"a/b", 7])
def test_non_string_keys_are_refused(key):
    with pytest.raises(ValueError):
        validate_key(key)


@pytest.mark.parametrize(
    ("prefix", "normalized"),
    [("", ""), ("/", ""), ("media", "media/"), ("/media/", "media/"), ("env/prod", "env/prod/")],
)
def test_prefixes_are_normalized(prefix, normalized):
    assert normalize_prefix(prefix) == normalized


@pytest.mark.parametrize("prefix", ["../media", "a//b", "me dia"])
def test_invalid_prefixes_are_refused(prefix):
    with pytest.raises(ValueError):
        normalize_prefix(prefix)
