import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from werkzeug.http import parse_options_header

from storage import content_disposition, disposition_for
from storage.headers import MAX_FILENAME_CHARS, check_header_value, normalize_metadata


def parsed_filename(header_value: str) -> str | None:
    """The file name a client reads from the header (filename* preferred, as RFC 6266 asks)."""
    return parse_options_header(header_value)[1].get("filename")


@pytest.mark.parametrize(
    ("disposition", "filename", "expected"),
    [
        ("inline", "photo.jpg", 'inline; filename="photo.jpg"'),
        ("attachment", None, "attachment"),
        ("attachment", "", "attachment"),
        ("attachment", "../../etc/passwd", 'attachment; filename="passwd"'),
        ("attachment", "..\\..\\Windows\\evil.exe", 'attachment; filename="evil.exe"'),
        ("inline", "a\r\nSet-Cookie: x", 'inline; filename="aSet-Cookie: x"'),
        ("inline", 'say "hi".txt', 'inline; filename="say hi.txt"'),
        ("inline", "..", "inline"),
        ("inline", " .hidden. ", 'inline; filename="hidden"'),
        ("inline", "tab\tand\x00nul\x7f.txt", 'inline; filename="tabandnul.txt"'),
        ("inline", "\u202egpj.exe", 'inline; filename="gpj.exe"'),
        ("attachment", "café.jpg", "attachment; filename=\"cafe.jpg\"; filename*=UTF-8''caf%C3%A9.jpg"),
        ("inline", "照片.png", "inline; filename=\"__.png\"; filename*=UTF-8''%E7%85%A7%E7%89%87.png"),
        # Compatibility forms whose ASCII decomposition is a quote, a path separator or dots.
        (
            "attachment",
            "a\uff02; filename\uff1d\uff02evil.html",
            'attachment; filename="a_; filename=_evil.html"; '
            "filename*=UTF-8''a%EF%BC%82%3B%20filename%EF%BC%9D%EF%BC%82evil.html",
        ),
        (
            "attachment",
            "\u2025\uff0f\u2025\uff0fetc\uff0fpasswd",
            'attachment; filename="_.._etc_passwd"; '
            "filename*=UTF-8''%E2%80%A5%EF%BC%8F%E2%80%A5%EF%BC%8Fetc%EF%BC%8Fpasswd",
        ),
        ("inline", "x\uff3c", "inline; filename=\"x_\"; filename*=UTF-8''x%EF%BC%BC"),
        ("inline", "\u2025", "inline; filename=\"_\"; filename*=UTF-8''%E2%80%A5"),
        ("inline", "\u2100.txt", "inline; filename=\"a_c.txt\"; filename*=UTF-8''%E2%84%80.txt"),
    ],
)
def test_content_disposition(disposition, filename, expected):
    assert content_disposition(disposition, filename) == expected


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("image/png", "inline"),
        ("IMAGE/JPEG", "inline"),
        ("video/mp4", "inline"),
        ("audio/mpeg; rate=44100", "inline"),
        ("image/svg+xml", "attachment"),
        ("image/svg+xml; charset=utf-8", "attachment"),
        ("Image/SVG+XML", "attachment"),
        ("image/svg", "attachment"),
        ("text/html", "attachment"),
        ("application/pdf", "attachment"),
        ("", "attachment"),
        (None, "attachment"),
    ],
)
def test_disposition_for(content_type, expected):
    assert disposition_for(content_type) == expected


def test_unicode_names_reach_clients_intact():
    assert parsed_filename(content_disposition("attachment", "résumé 照片.pdf")) == "résumé 照片.pdf"


def test_long_names_are_shortened_keeping_the_extension():
    value = content_disposition("attachment", "x" * 1000 + ".jpeg")
    name = parsed_filename(value)
    assert len(name) == MAX_FILENAME_CHARS and name.endswith("x.jpeg")


def test_unknown_dispositions_are_refused():
    with pytest.raises(ValueError):
        content_disposition("inline; filename=evil.html", None)


# Every character whose compatibility decomposition holds a quote, a backslash, a slash or only dots.
_DECOMPOSING_TO_SEPARATORS = (
    "\u2024\u2025\u2026\u2100\u2101\u2105\u2106\ufe19\ufe30\ufe52\ufe68\uff02\uff0e\uff0f\uff3c"
)


@given(st.text() | st.text(st.sampled_from(_DECOMPOSING_TO_SEPARATORS + "a._ ")))
def test_any_filename_gives_a_safe_header(filename):
    value = content_disposition("attachment", filename)
    assert value.isascii() and value.isprintable()
    name = parsed_filename(value)
    assert name is None or not any(char in name for char in '/\\"\r\n\x00')
    # The ASCII `filename` too, which clients that do not read `filename*` save under.
    fallback = re.fullmatch(r'attachment(?:; filename="([^"\\/]*)")?(?:; filename\*=\S+)?', value)
    assert fallback, value
    assert fallback[1] is None or (
        fallback[1] and not fallback[1].startswith(".") and len(fallback[1]) <= MAX_FILENAME_CHARS
    )


def test_metadata_names_are_normalized():
    assert normalize_metadata({"X-Sha256": "ab12", "message_id": "m-1", "Empty": ""}) == {
        "x_sha256": "ab12",
        "message_id": "m-1",
        "empty": "",
    }


@pytest.mark.parametrize(
    "metadata",
    [
        {"1st": "x"},
        {"a b": "x"},
        {"": "x"},
        {"na\u00efve": "x"},
        {"\u212a": "x"},  # the Kelvin sign lower-cases to an ASCII "k"
        {"a" * 129: "x"},
        {"a-b": "1", "A_B": "2"},
        {"ok": "line\r\nInjected: yes"},
        {"ok": "caf\u00e9"},
        {"ok": " padded"},
        {"ok": 5},
    ],
)
def test_invalid_metadata_is_refused(metadata):
    with pytest.raises(ValueError):
        normalize_metadata(metadata)


@pytest.mark.parametrize("value", ["", "text/html\r\nX-Evil: 1", " image/png", "bild/\u00e4"])
def test_header_values_must_be_printable_ascii(value):
    with pytest.raises(ValueError):
        check_header_value("content_type", value)
