"""Reading upload bodies (webhook_service.media.upload_parsing) without the app: every JSON form of the
file, the base64 leniencies and refusals, the size limit, and the memory the streaming parse needs."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import textwrap
import tracemalloc

import pytest

from webhook_service.api import upload_body as upload_parsing
from webhook_service.api.errors import ApiError
from webhook_service.api.upload_body import SizeLimits, max_body_bytes, read_json_upload

LIMITS = SizeLimits(plain=1000, converting=4000)
FILE = bytes(range(256)) * 3  # 768 bytes, every byte value


class CountingStream(io.BytesIO):
    """A request body that remembers how much of it was read."""

    def __init__(self, data: bytes):
        super().__init__(data)
        self.bytes_read = 0

    def read(self, size: int = -1) -> bytes:
        chunk = super().read(size)
        self.bytes_read += len(chunk)
        return chunk


def parse(body: bytes | dict, tmp_path, *, limits: SizeLimits = LIMITS, convert: bool = False):
    raw = json.dumps(body).encode() if isinstance(body, dict) else body
    return read_json_upload(io.BytesIO(raw), tmp_path / "file", limits=limits, convert=convert)


def refusal(body: bytes | dict, tmp_path, **options) -> ApiError:
    with pytest.raises(ApiError) as caught:
        parse(body, tmp_path, **options)
    return caught.value


def array_json(data: bytes, separator: str = ", ") -> bytes:
    return b'{"fileName": "x.bin", "data": [' + separator.join(map(str, data)).encode() + b"]}"


class TestFileForms:
    def test_byte_array_as_python_writes_it(self, tmp_path):
        body = parse({"phoneNumber": "+15551234567", "data": list(FILE)}, tmp_path)
        assert (tmp_path / "file").read_bytes() == FILE
        assert (body.encoding, body.size, body.has_file) == ("bytes", len(FILE), True)
        assert body.sha256 == hashlib.sha256(FILE).hexdigest()
        assert body.fields == {"phoneNumber": "+15551234567"}

    def test_byte_array_as_node_writes_it(self, tmp_path):
        parse(array_json(FILE, separator=","), tmp_path)
        assert (tmp_path / "file").read_bytes() == FILE

    def test_whole_byte_values_written_with_a_fraction_or_an_exponent(self, tmp_path):
        """JSON Schema counts 153.0 as an integer, so the document's byte values include it."""
        parse(b'{"fileName": "x.bin", "data": [153.0, 1e2, 2.55E+2, 0.0, 1.00, 7]}', tmp_path)
        assert (tmp_path / "file").read_bytes() == bytes([153, 100, 255, 0, 1, 7])

    def test_base64_string_as_csharp_writes_it(self, tmp_path):
        body = parse({"content": base64.b64encode(FILE).decode(), "mimeType": "image/jpeg"}, tmp_path)
        assert (tmp_path / "file").read_bytes() == FILE
        assert body.encoding == "base64" and body.fields == {"mimeType": "image/jpeg"}

    def test_base64_wrapped_by_gnu_base64_with_escaped_line_breaks(self, tmp_path):
        wrapped = "\n".join(textwrap.wrap(base64.b64encode(FILE).decode(), 76)) + "\n"
        parse({"data": wrapped}, tmp_path)
        assert (tmp_path / "file").read_bytes() == FILE

    def test_raw_line_breaks_inside_the_json_string_as_seed_001s_curl_sends_them(self, tmp_path):
        wrapped = "\r\n".join(textwrap.wrap(base64.b64encode(FILE).decode(), 76))
        body = parse(b'{\n"fileName": "product-image.jpg",\n"data": "' + wrapped.encode() + b'"\n}', tmp_path)
        assert (tmp_path / "file").read_bytes() == FILE
        assert body.fields == {"fileName": "product-image.jpg"}

    def test_raw_line_break_between_numbers_does_not_join_them(self, tmp_path):
        assert refusal(b'{"data": [1\n2]}', tmp_path).code == "invalid_body"

    def test_escaped_line_breaks_in_a_text_field_reach_the_field(self, tmp_path):
        body = parse({"fileName": "a\r\nb.jpg", "data": [1]}, tmp_path)
        assert body.fields["fileName"] == "a\r\nb.jpg"

    def test_data_uri_prefix_is_stripped_and_its_type_kept(self, tmp_path):
        body = parse({"data": "data:image/png;base64," + base64.b64encode(FILE).decode()}, tmp_path)
        assert (tmp_path / "file").read_bytes() == FILE
        assert body.data_uri_type == "image/png"

    @pytest.mark.parametrize("encoded", ["AQI", "AQI=", " AQ I= \n"])
    def test_missing_padding_and_whitespace_are_accepted(self, tmp_path, encoded):
        parse({"data": encoded}, tmp_path)
        assert (tmp_path / "file").read_bytes() == b"\x01\x02"

    @pytest.mark.parametrize(
        "encoded",
        ["not base64!", "AQI=AQI=", "A", "AQ==A", "=AQI", "AQ-_", "AQ\u00e9I", "data:text/plain,hello"],
        ids=[
            "punctuation",
            "two glued encodings",
            "one character",
            "data after padding",
            "leading padding",
            "url-safe alphabet",
            "non-ascii",
            "data uri without base64",
        ],
    )
    def test_invalid_base64_is_refused(self, tmp_path, encoded):
        error = refusal({"data": encoded}, tmp_path)
        assert (error.status, error.code) == (400, "invalid_base64")

    def test_base64_decoded_across_slice_boundaries(self, tmp_path, monkeypatch):
        monkeypatch.setattr(upload_parsing, "_BASE64_SLICE_CHARS", 8)
        wrapped = "\n".join(textwrap.wrap(base64.b64encode(FILE).decode(), 7))
        parse({"data": wrapped}, tmp_path)
        assert (tmp_path / "file").read_bytes() == FILE

    def test_padding_then_more_data_in_a_later_slice_is_refused(self, tmp_path, monkeypatch):
        monkeypatch.setattr(upload_parsing, "_BASE64_SLICE_CHARS", 4)
        assert refusal({"data": "AQ==AQ=="}, tmp_path).code == "invalid_base64"

    @pytest.mark.parametrize(
        "value", ["300", "-1", "1.5", "2.56e2", "-0.5", "true", "null", '"7"', "[1]", "{}", "99999999999999999999999"]
    )
    def test_anything_but_a_byte_value_in_the_array_is_refused(self, tmp_path, value):
        error = refusal(b'{"data": [1, ' + value.encode() + b", 2]}", tmp_path)
        assert (error.status, error.code) == (400, "invalid_byte")

    def test_null_file_field_counts_as_absent(self, tmp_path):
        assert parse({"data": None, "fileName": "a.jpg"}, tmp_path).has_file is False

    def test_empty_array_is_an_empty_file(self, tmp_path):
        body = parse({"data": []}, tmp_path)
        assert body.has_file and body.size == 0


class TestStructure:
    @pytest.mark.parametrize(
        "raw",
        [
            b"",
            b"   ",
            b"[]",
            b'"text"',
            b"42",
            b"{",
            b'{"data": [1, 2',
            b'{"a": 1} {"b": 2}',
            b'{"a": 1} x',
            b'{"fileName": "\xff"}',
            b"{'a': 1}",
        ],
        ids=[
            "empty",
            "blank",
            "array",
            "string",
            "number",
            "unclosed",
            "unclosed array",
            "two documents",
            "trailing garbage",
            "invalid utf-8",
            "single quotes",
        ],
    )
    def test_not_one_json_object_is_refused(self, tmp_path, raw):
        error = refusal(raw, tmp_path)
        assert (error.status, error.code) == (400, "invalid_body")

    @pytest.mark.parametrize("field", ["data", "fileName", "convert", "unknown"])
    @pytest.mark.parametrize(
        "number", ["1e99999999999999999999", "-1E-99999999999999999999", "2.5E+99999999999999999999"]
    )
    def test_a_number_past_the_range_of_a_decimal_is_refused(self, tmp_path, field, number):
        value = f"[{number}]" if field == "data" else number
        error = refusal(f'{{"{field}": {value}}}'.encode(), tmp_path)
        assert (error.status, error.code) == (400, "invalid_body")

    @pytest.mark.parametrize("key", ["fileName", "data", "convert"])
    def test_duplicate_known_field_is_refused(self, tmp_path, key):
        value = {"fileName": '"a"', "data": "[1]", "convert": "true"}[key]
        raw = f'{{"{key}": {value}, "{key}": {value}}}'.encode()
        assert refusal(raw, tmp_path).code == "invalid_body"

    def test_both_data_and_content_is_refused(self, tmp_path):
        assert refusal({"data": [1], "content": "AQ=="}, tmp_path).code == "invalid_body"

    @pytest.mark.parametrize(
        "field, value",
        [
            ("fileName", 1),
            ("phoneNumber", 15551234567),
            ("tenantId", ["x"]),
            ("contentType", {"a": 1}),
            ("convert", "yes"),
            ("convert", 1),
            ("data", 12),
            ("data", {"bytes": [1]}),
            ("content", True),
        ],
    )
    def test_wrong_json_type_is_refused(self, tmp_path, field, value):
        error = refusal({field: value}, tmp_path)
        assert (error.status, error.code) == (400, "invalid_field")

    def test_unknown_fields_are_skipped_however_nested(self, tmp_path):
        nested = {"a": [[{"b": [1, {"c": None}]}], "x"], "d": {}}
        body = parse(
            {
                "extra": nested,
                "tags": [],
                "fileName": "a.jpg",
                "more": {"data": "not the file"},
                "data": [7],
                "n": 1.5,
                "t": True,
            },
            tmp_path,
        )
        assert body.fields == {"fileName": "a.jpg"}
        assert (tmp_path / "file").read_bytes() == b"\x07"

    def test_null_text_fields_count_as_absent_values(self, tmp_path):
        assert parse({"tenantId": None, "data": [1]}, tmp_path).fields == {"tenantId": None}


class TestSizeLimit:
    def test_exactly_the_limit_passes_and_one_byte_more_is_refused(self, tmp_path):
        assert parse({"data": [0] * LIMITS.plain}, tmp_path).size == LIMITS.plain
        error = refusal({"data": [0] * (LIMITS.plain + 1)}, tmp_path)
        assert (error.status, error.code) == (413, "payload_too_large")
        assert error.message == "Media file exceeds maximum size of 1,000 bytes"

    def test_the_seeds_sentence_for_the_default_limit(self):
        assert upload_parsing.too_large(5 * 1024 * 1024).message == "Media file exceeds maximum size of 5MB"

    def test_base64_over_the_limit_is_refused(self, tmp_path):
        error = refusal({"data": base64.b64encode(bytes(LIMITS.plain + 1)).decode()}, tmp_path)
        assert error.status == 413

    def test_reading_stops_soon_after_the_limit(self, tmp_path):
        limits = SizeLimits(plain=256 * 1024, converting=1024 * 1024)
        stream = CountingStream(array_json(bytes(range(200, 256)) * 20_000))  # 1.1 MB of data, 5.6 MB of JSON
        with pytest.raises(ApiError) as caught:
            read_json_upload(stream, tmp_path / "file", limits=limits, convert=False)
        assert caught.value.status == 413
        # 5 characters a byte up to the limit and one write chunk past it, plus one read chunk ahead.
        assert stream.bytes_read <= 5 * (limits.plain + 64 * 1024) + 64 * 1024

    def test_convert_raises_the_limit(self, tmp_path):
        assert parse({"data": [0] * 3000}, tmp_path, convert=True).size == 3000
        assert parse({"convert": True, "data": [0] * 3000}, tmp_path).convert is True

    def test_a_convert_field_after_the_file_comes_too_late_for_the_limit(self, tmp_path):
        # The file is written as it streams by; a flag that arrives after it cannot widen its limit.
        assert refusal({"data": [0] * 3000, "convert": True}, tmp_path).status == 413

    def test_request_cap_fits_the_array_form_of_a_file_at_the_limit(self):
        largest = array_json(bytes([255]) * LIMITS.plain)
        assert len(largest) <= max_body_bytes(LIMITS.plain)
        assert max_body_bytes(5 * 1024 * 1024) == 26_279_936


class TestReadSizes:
    """The sizes the JSON parser reads in (see json_stream.JsonBodyStream)."""

    class RecordingStream(io.BytesIO):
        def __init__(self, data: bytes):
            super().__init__(data)
            self.sizes: list[int] = []

        def read(self, size: int = -1) -> bytes:
            self.sizes.append(size)
            return super().read(size)

    def test_reads_grow_inside_a_long_base64_string(self, tmp_path):
        stream = self.RecordingStream(
            json.dumps({"data": base64.b64encode(os.urandom(3 * 1024 * 1024)).decode(), "fileName": "x"}).encode()
        )
        read_json_upload(stream, tmp_path / "file", limits=SizeLimits(4 * 1024 * 1024, 0), convert=False)
        assert max(stream.sizes) == 1024 * 1024
        assert len(stream.sizes) < 15

    def test_reads_stay_small_in_an_array_of_byte_values(self, tmp_path):
        stream = self.RecordingStream(array_json(os.urandom(64 * 1024)))
        read_json_upload(stream, tmp_path / "file", limits=SizeLimits(64 * 1024, 0), convert=False)
        assert set(stream.sizes) == {16 * 1024}


class TestMemory:
    def test_the_byte_array_form_is_never_held_in_memory(self, tmp_path):
        """Peak allocation while parsing the array form of a 512 KiB file (2.3 MB of JSON) stays at the
        parser's fixed working set (ijson's events for one 16 KiB read, some 250 KB), below the size of
        the file itself, and does not grow with the file: no copy of the file, let alone of the JSON, is
        held. (Not 5 MiB: tracemalloc makes each of the parser's millions of small allocations slow.)"""
        peaks = {}
        for size in (64 * 1024, 512 * 1024):
            body = array_json(os.urandom(size))
            tracemalloc.start()
            try:
                read_json_upload(io.BytesIO(body), tmp_path / "file", limits=SizeLimits(size, size), convert=False)
                peaks[size] = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            assert (tmp_path / "file").stat().st_size == size
        assert peaks[512 * 1024] < 512 * 1024
        assert peaks[512 * 1024] - peaks[64 * 1024] < 64 * 1024
