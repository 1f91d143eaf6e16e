"""The upload fields' rules as the OpenAPI document states them (api/upload_fields.py's patterns) are the
rules the service applies: the file name pattern is derived again here from the Unicode database, and
hypothesis checks, name by name and number by number, that the document and the checks agree."""

from __future__ import annotations

import io
import re
import sys
import unicodedata

from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from storage.headers import MAX_FILENAME_CHARS
from tests.fixtures.app import NUMBER_A_ID
from tests.media import samples
from tests.support.media_uploads import UPLOADS, A, error_of, seed_001_body, upload
from webhook_service.api.errors import ApiError
from webhook_service.api.upload_fields import (
    FILE_NAME_PATTERN,
    MAX_MEDIA_TYPE_CHARS,
    MEDIA_TYPE_PATTERN,
    PHONE_NUMBER_PATTERN,
    _declared_type,
    _sending_number,
    check_file_name,
)
from webhook_service.config.model import PhoneNumber, Tenant

TENANT = Tenant(id="t", phone_numbers=[PhoneNumber(id="n", number="+15551234567")])

# What sanitize_filename removes (format, line and paragraph separators) besides quotes; it also trims
# white space and dots.
REMOVED_CATEGORIES = {"Cf", "Zl", "Zp"}


def derived_file_name_pattern() -> str:
    refused = {"/", "\\"} | {chr(c) for c in range(0x20)} | {chr(c) for c in range(0x7F, 0xA0)}
    # Characters of the Basic Multilingual Plane only: an astral character in a pattern is two code
    # units to an ECMA-262 regular expression without the u flag, and would break its ranges.
    blank = {".", '"'} | {
        char
        for char in map(chr, range(0x10000))
        if unicodedata.category(char) in REMOVED_CATEGORIES or (char.isspace() and char not in refused)
    }
    return f"^[^{char_class(refused)}]*[^{char_class(refused | blank)}][^{char_class(refused)}]*$"


def char_class(chars: set[str]) -> str:
    ranges: list[list[int]] = []
    for code in sorted(map(ord, chars)):
        if ranges and code == ranges[-1][1] + 1:
            ranges[-1][1] = code
        else:
            ranges.append([code, code])
    return "".join(class_char(a) if a == b else f"{class_char(a)}-{class_char(b)}" for a, b in ranges)


def class_char(code: int) -> str:
    if code < 0x20 or 0x7F <= code < 0xA0:
        return f"\\x{code:02x}"
    return "\\" + chr(code) if chr(code) in "\\]^-[" else chr(code)


def test_the_file_name_pattern_is_derived_from_this_pythons_unicode_database():
    assert derived_file_name_pattern() == FILE_NAME_PATTERN, (
        f"Unicode {unicodedata.unidata_version} (Python {sys.version_info[:2]}): write out derived_file_name_pattern()"
    )


def documented(pattern: str, value: str) -> bool:
    """Whether `value` matches a JSON Schema pattern: an ECMA-262 regular expression, whose `$` matches
    only at the end (Python's also matches before a final line feed)."""
    return re.search(pattern[:-1] + r"\Z" if pattern.endswith("$") else pattern, value) is not None


def accepted_name(name: str) -> bool:
    try:
        check_file_name(name)
    except ApiError:
        return False
    return True


def documented_name(name: str) -> bool:
    return len(name) <= MAX_FILENAME_CHARS and documented(FILE_NAME_PATTERN, name)


@settings(max_examples=500, deadline=None, derandomize=True)
@given(name=st.text(max_size=300) | st.from_regex(FILE_NAME_PATTERN, fullmatch=True))
@example(name="photo.jpg")
@example(name="..")
@example(name=' ."\u200b. ')
@example(name="\u2028")
@example(name="a\n")
@example(name="../x")
@example(name="x" * 256)
def test_file_names_documented_as_they_are_checked(name):
    # Astral format characters are left out of the pattern (see derived_file_name_pattern).
    assume(not any(ord(char) > 0xFFFF and unicodedata.category(char) in REMOVED_CATEGORIES for char in name))
    assert documented_name(name) == accepted_name(name), name


@settings(max_examples=300, deadline=None, derandomize=True)
@given(value=st.text(max_size=80) | st.from_regex(PHONE_NUMBER_PATTERN, fullmatch=True))
@example(value="+15551234567\n")
def test_phone_numbers_answered_400_only_when_the_document_refuses_them(value):
    """A number written as the document allows is the tenant's (accepted) or not (403), never a 400."""
    try:
        _sending_number(value, None, TENANT, "US")
        refused_as_malformed = False
    except ApiError as error:
        refused_as_malformed = error.status == 400
    assert (len(value) <= 64 and documented(PHONE_NUMBER_PATTERN, value)) != refused_as_malformed, value


@settings(max_examples=300, deadline=None, derandomize=True)
@given(value=st.text(max_size=300) | st.from_regex(MEDIA_TYPE_PATTERN, fullmatch=True))
@example(value=" image/jpeg ")
@example(value="")
@example(value="image/jpeg\n")
def test_declared_types_documented_as_they_are_checked(value):
    try:
        _declared_type(value, "contentType")
        accepted = True
    except ApiError:
        accepted = False
    assert (len(value) <= MAX_MEDIA_TYPE_CHARS and documented(MEDIA_TYPE_PATTERN, value)) == accepted, value


class TestBlankAndNull:
    """What the document states about values left blank or null is what the service does."""

    def test_a_blank_form_field_is_one_left_out(self, client):
        form = {
            "file": (io.BytesIO(samples.pdf()), "from-the-part.pdf"),
            "phoneNumber": "",
            "phoneNumberId": NUMBER_A_ID,
            "fileName": "",
            "contentType": "",
            "tenantId": "",
        }
        response = client.post(UPLOADS, data=form, headers=A, content_type="multipart/form-data")
        assert response.status_code == 201, response.get_data(as_text=True)
        assert response.get_json()["fileName"] == "from-the-part.pdf"

    def test_a_form_with_only_blank_numbers_names_none(self, client):
        form = {"file": (io.BytesIO(samples.pdf()), "a.pdf"), "phoneNumber": "", "phoneNumberId": ""}
        response = client.post(UPLOADS, data=form, headers=A, content_type="multipart/form-data")
        assert error_of(response)[:2] == (400, "missing_field")

    def test_json_nulls_are_fields_left_out(self, client):
        body = seed_001_body(samples.pdf(), contentType=None, tenantId=None, convert=None, phoneNumberId=None)
        assert upload(client, body).status_code == 201

    def test_null_required_fields_are_missing(self, client):
        for field in ("fileName", "phoneNumber", "data"):
            assert error_of(upload(client, seed_001_body(samples.pdf(), **{field: None})))[:2] == (400, "missing_field")
