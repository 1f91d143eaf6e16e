"""Fuzzing the upload API's fields through the app (issue 16): seed 000's and seed 001's JSON bodies
(the file as base64 or as an array of byte values) with any part replaced by hostile values, bad bytes
put inside strings or anywhere, and the same fields sent as multipart. What must hold: never a 5xx,
and every refusal in the documented shape {"error": {"code", "message"}}."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.support.hostile_inputs import (
    FUZZ_SETTINGS,
    header_values,
    json_body,
    mutated,
    percent_encoded,
    spliced,
    text_bytes,
    vocabulary,
)
from tests.support.media_uploads import UPLOADS, A, error_of, seed_000_body, seed_001_body

EXAMPLES = 300

FILE = b"hello\n"  # text/plain, which the media policy allows: a valid upload is stored, not refused
TEMPLATES = (
    seed_001_body(FILE, as_byte_values=False, fileName="a.txt", contentType="text/plain", convert=False),
    seed_001_body(FILE, fileName="a.txt", contentType="text/plain", unknown={"nested": [1, {"x": None}]}),
    seed_000_body(FILE, fileName="a.txt", mimeType="text/plain"),
)
VOCABULARY = tuple(sorted({name for template in TEMPLATES for name in vocabulary(template)}))
BOUNDARY = "fuzz-boundary"


def multipart_body(document: Any, part_type: str) -> bytes:
    """The document's members as form fields, and the file as a part named `file` that carries the
    document's fileName (whatever it holds) as its file name."""
    fields = document if isinstance(document, dict) else {}
    parts = []
    for name, value in fields.items():
        if name in ("data", "content"):
            continue
        for item in value if isinstance(value, list) else [value]:
            encoded = json_body(item) if isinstance(item, (dict, list)) else text_bytes(item)
            parts.append(b'Content-Disposition: form-data; name="' + text_bytes(name) + b'"\r\n\r\n' + encoded)
    file_name = text_bytes(fields.get("fileName", "a.txt"))
    parts.append(
        b'Content-Disposition: form-data; name="file"; filename="'
        + file_name
        + b'"\r\nContent-Type: '
        + part_type.encode("latin-1")
        + b"\r\n\r\n"
        + FILE
    )
    delimiter = f"--{BOUNDARY}\r\n".encode()
    return b"".join(delimiter + part + b"\r\n" for part in parts) + f"--{BOUNDARY}--\r\n".encode()


@st.composite
def uploads(draw: st.DrawFn) -> tuple[bytes, str, str]:
    """(body, Content-Type, query string)."""
    document = draw(mutated(draw(st.sampled_from(TEMPLATES)), VOCABULARY))
    if draw(st.sampled_from(("json", "json", "json", "multipart"))) == "json":
        body, content_type = json_body(document), "application/json"
    else:
        part_type = draw(st.one_of(st.just("text/plain"), header_values))
        body, content_type = multipart_body(document, part_type), f"multipart/form-data; boundary={BOUNDARY}"
    body = draw(spliced(body))
    convert = draw(st.one_of(st.none(), st.sampled_from(("true", "0", "maybe", "\ud800"))))
    return body, content_type, "" if convert is None else f"?convert={percent_encoded(convert)}"


@pytest.mark.slow
def test_no_upload_is_a_server_error(client):
    @settings(FUZZ_SETTINGS, max_examples=EXAMPLES)
    @given(upload=uploads())
    # Found by fault testing (issue 16): UTF-8-encoded surrogates (ED A0 80) inside a string field.
    @example(
        upload=(
            b'{"fileName": "a\xed\xa0\x80.txt", "phoneNumber": "+15551234567", "data": "aGk="}',
            "application/json",
            "",
        )
    )
    @example(
        upload=(
            b'{"phoneNumber": "+1555\xed\xa0\x80", "fileName": "a.txt", "data": [104, 105]}',
            "application/json",
            "",
        )
    )
    # Found by this test: the escape of a lone low surrogate, which the parser writes as ED BF BF.
    @example(upload=(b'{"phoneNumber": "+15551234567", "fileName": "\\udfff", "data": "aGk="}', "application/json", ""))
    def check(upload: tuple[bytes, str, str]) -> None:
        body, content_type, query = upload
        response = client.post(UPLOADS + query, data=body, headers=A, content_type=content_type)
        assert response.status_code < 500, response.get_data(as_text=True)
        if response.status_code >= 400:
            error_of(response)  # the documented shape, or an assertion error

    check()
