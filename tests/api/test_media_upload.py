"""POST /api/v1/media through the app: both documented request shapes and multipart, the answer, tenancy,
the inbound attachments' validation rules and every refusal in the seeds' words."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import textwrap
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from PIL import Image
from prometheus_client import REGISTRY
from werkzeug.test import EnvironBuilder

from tests.fixtures.app import API_KEY_A, NUMBER_A, NUMBER_A_ID, NUMBER_B, NUMBER_B_ID, TENANT_A, TENANT_B, USER_A
from tests.media import samples
from tests.support.media_uploads import UPLOADS, A, basic, error_of, local, seed_000_body, seed_001_body, upload
from webhook_service.api.upload_body import INVALID_TEXT, max_body_bytes
from webhook_service.database.tables import MediaUpload

MIB = 1024 * 1024
TOO_LARGE = (413, "payload_too_large", "Media file exceeds maximum size of 5MB")
PHOTO = samples.jpeg((120, 80))


def stored_bytes(client, answer: dict) -> bytes:
    response = client.get(local(answer["url"]))
    assert response.status_code == 200
    return response.data


class TestRequestShapes:
    def test_seed_001_byte_array(self, client, runtime):
        response = upload(client, seed_001_body(PHOTO))
        assert response.status_code == 201, response.get_data(as_text=True)
        answer = response.get_json()
        assert answer["uri"] == answer["url"] and answer["url"].startswith("http://localhost/media/")
        assert answer["fileName"] == "product-image.jpg"
        assert answer["contentType"] == answer["mimeType"] == "image/jpeg"
        assert (answer["phoneNumber"], answer["phoneNumberId"], answer["tenantId"]) == (NUMBER_A, NUMBER_A_ID, TENANT_A)
        assert answer["warnings"] == []
        assert response.headers["Location"] == f"{UPLOADS}/{answer['id']}"
        body = stored_bytes(client, answer)
        assert (len(body), hashlib.sha256(body).hexdigest()) == (answer["size"], answer["sha256"])
        # Images are re-encoded as inbound attachments are: same picture, new bytes.
        assert body != PHOTO and Image.open(io.BytesIO(body)).size == (120, 80)
        expires = datetime.fromisoformat(answer["expiresAt"].replace("Z", "+00:00"))
        assert abs(expires - (datetime.now(UTC) + timedelta(hours=24))) < timedelta(minutes=1)

    def test_seed_001_base64_as_csharp_sends_it(self, client):
        response = upload(client, seed_001_body(PHOTO, as_byte_values=False))
        assert response.status_code == 201
        assert response.get_json()["uri"]

    def test_seed_000_shape(self, client):
        response = upload(client, seed_000_body(samples.pdf(), fileName="terms.pdf", mimeType="application/pdf"))
        assert response.status_code == 201
        answer = response.get_json()
        assert (answer["fileName"], answer["mimeType"], answer["phoneNumber"]) == (
            "terms.pdf",
            "application/pdf",
            NUMBER_A,
        )
        # Anything but a re-encoded image is stored byte for byte, as a download.
        assert stored_bytes(client, answer) == samples.pdf()
        assert client.get(local(answer["url"])).headers["Content-Disposition"] == 'attachment; filename="terms.pdf"'

    def test_multipart(self, client):
        response = client.post(
            UPLOADS,
            headers=A,
            data={"file": (io.BytesIO(samples.pdf()), "terms.pdf", "application/pdf"), "phoneNumber": NUMBER_A},
        )
        assert response.status_code == 201, response.get_data(as_text=True)
        answer = response.get_json()
        assert (answer["fileName"], answer["contentType"], answer["declaredContentType"]) == (
            "terms.pdf",
            "application/pdf",
            "application/pdf",
        )
        assert stored_bytes(client, answer) == samples.pdf()

    def test_multipart_fields_win_over_the_file_parts_own(self, client):
        response = client.post(
            UPLOADS,
            headers=A,
            data={
                "file": (io.BytesIO(PHOTO), "IMG_0001.JPG", "application/octet-stream"),
                "phoneNumberId": NUMBER_A_ID,
                "fileName": "product-image.jpg",
                "mimeType": "image/jpeg",
                "convert": "false",
            },
        )
        assert response.status_code == 201
        assert response.get_json()["fileName"] == "product-image.jpg"
        assert response.get_json()["declaredContentType"] == "image/jpeg"

    def test_bearer_api_key(self, client):
        response = upload(client, seed_001_body(PHOTO), headers={"Authorization": f"Bearer {API_KEY_A}"})
        assert response.status_code == 201

    @pytest.mark.parametrize(
        "encoded",
        [
            "data:image/jpeg;base64," + base64.b64encode(PHOTO).decode(),
            "\n".join(textwrap.wrap(base64.b64encode(PHOTO).decode(), 76)) + "\n",
            base64.b64encode(PHOTO).decode().rstrip("="),
        ],
        ids=["data uri", "newlines", "no padding"],
    )
    def test_lenient_base64(self, client, encoded):
        response = upload(client, seed_001_body(PHOTO, data=encoded, contentType=None))
        assert response.status_code == 201, response.get_data(as_text=True)
        assert response.get_json()["contentType"] == "image/jpeg"

    def test_data_uri_type_is_the_declared_type_of_last_resort(self, client):
        encoded = "data:image/png;base64," + base64.b64encode(PHOTO).decode()
        answer = upload(client, seed_001_body(PHOTO, data=encoded, contentType=None)).get_json()
        assert answer["declaredContentType"] == "image/png" and answer["contentType"] == "image/jpeg"

    def test_unknown_and_null_fields_are_ignored(self, client):
        body = seed_001_body(PHOTO, tenantId=None, caption={"text": ["x", {"y": None}]}, priority=1.5)
        assert upload(client, body).status_code == 201

    def test_phone_number_in_another_format_is_normalized(self, client):
        assert upload(client, seed_001_body(PHOTO, phoneNumber="(555) 123-4567")).status_code == 201

    def test_both_number_fields_naming_the_same_number(self, client):
        assert upload(client, seed_001_body(PHOTO, phoneNumberId=NUMBER_A_ID)).status_code == 201

    def test_the_upload_is_recorded(self, client, runtime):
        answer = upload(client, seed_001_body(PHOTO)).get_json()
        with runtime.db.reading() as session:
            row = session.get(MediaUpload, answer["id"])
        day = row.created_at
        assert row.blob_key == f"{TENANT_A}/uploads/{day:%Y/%m/%d}/{answer['id']}"
        assert (row.tenant_id, row.phone_number, row.phone_number_id, row.created_by) == (
            TENANT_A,
            NUMBER_A,
            NUMBER_A_ID,
            USER_A[0],
        )
        assert (row.content_type, row.declared_content_type, row.size, row.sha256) == (
            "image/jpeg",
            "image/jpeg",
            answer["size"],
            answer["sha256"],
        )
        assert row.revoked_at is None and row.expires_at.isoformat().startswith(answer["expiresAt"][:19])
        assert runtime.blob_store.head(row.blob_key).content_disposition == 'inline; filename="product-image.jpg"'


class TestValidation:
    def test_declared_type_that_disagrees_is_answered_with_the_sniffed_type(self, client):
        response = upload(client, seed_001_body(PHOTO, fileName="photo.png", contentType="image/png"))
        assert response.status_code == 201
        answer = response.get_json()
        assert (answer["contentType"], answer["mimeType"], answer["declaredContentType"]) == (
            "image/jpeg",
            "image/jpeg",
            "image/png",
        )
        assert answer["warnings"] == [
            "The declared type image/png differs from the stored type image/jpeg, which is what the URL serves."
        ]

    def test_octet_stream_declares_nothing(self, client):
        answer = upload(client, seed_001_body(PHOTO, contentType="application/octet-stream")).get_json()
        assert (answer["declaredContentType"], answer["warnings"]) == (None, [])

    def test_svg_declared_as_png_is_refused_as_svg(self, client):
        response = upload(client, seed_001_body(samples.svg(), fileName="logo.png", contentType="image/png"))
        assert error_of(response) == (415, "unsupported_media_type", "Unsupported media type: image/svg+xml")

    def test_bmp_is_refused_in_the_seeds_words(self, client):
        response = upload(client, seed_001_body(samples.bmp(), fileName="photo.bmp", contentType="image/bmp"))
        assert error_of(response) == (415, "unsupported_media_type", "Unsupported media type: image/bmp")

    def test_exactly_the_limit_passes(self, client):
        # One byte more is refused: tests/api/test_upload_parsing.py, with a small limit.
        exact = upload(client, seed_000_body(samples.pdf(5 * MIB), fileName="big.pdf", mimeType="application/pdf"))
        assert exact.status_code == 201 and exact.get_json()["size"] == 5 * MIB

    def test_a_7_mb_payload_is_the_seeds_413(self, client):
        assert error_of(upload(client, seed_001_body(samples.pdf(7 * MIB), as_byte_values=False))) == TOO_LARGE

    def test_a_body_over_the_request_cap_is_refused_before_reading(self, client):
        padding = b" " * 26_279_937  # max_body_bytes(5 MiB) + 1
        response = client.post(UPLOADS, data=b"{}" + padding, headers=A, content_type="application/json")
        assert error_of(response) == TOO_LARGE

    def test_the_rest_of_a_refused_body_is_read_before_answering(self, client):
        """So that a client still sending (requests, HttpClient and axios send everything before reading)
        gets the answer rather than a connection reset."""
        body = b'{"fileName": "a.pdf", "data": [300' + b", 1" * 500_000 + b"]}"  # refused at its first value
        stream = io.BytesIO(body)
        response = client.post(
            UPLOADS, input_stream=stream, content_length=len(body), headers=A, content_type="application/json"
        )
        assert error_of(response)[:2] == (400, "invalid_byte")
        assert stream.tell() == len(body)

    def test_truncated_image_is_unprocessable(self, client):
        response = upload(client, seed_001_body(samples.truncated_jpeg()))
        assert error_of(response)[:2] == (422, "image_unreadable")

    def test_empty_file(self, client):
        assert error_of(upload(client, seed_001_body(b"")))[:2] == (400, "empty_file")


class TestRefusals:
    @pytest.mark.parametrize(
        "body, expected",
        [
            (b"", (400, "invalid_body")),
            (b"not json", (400, "invalid_body")),
            (b"[1, 2, 3]", (400, "invalid_body")),
            (b"{}", (400, "missing_field")),
        ],
        ids=["empty body", "not json", "not an object", "empty object"],
    )
    def test_malformed_body(self, client, body, expected):
        response = client.post(UPLOADS, data=body, headers=A, content_type="application/json")
        assert error_of(response)[:2] == expected

    @pytest.mark.parametrize(
        "changes, expected",
        [
            ({"data": "this is not base64!"}, (400, "invalid_base64")),
            ({"data": [255, 216, 300, 0]}, (400, "invalid_byte")),
            ({"data": [255, -1]}, (400, "invalid_byte")),
            ({"data": [255, 216.5]}, (400, "invalid_byte")),
            ({"data": 42}, (400, "invalid_field")),
            ({"fileName": "../../etc/passwd"}, (400, "invalid_file_name")),
            ({"fileName": "C:\\Users\\me\\photo.jpg"}, (400, "invalid_file_name")),
            ({"fileName": "photo.jpg\r\nX-Injected: 1"}, (400, "invalid_file_name")),
            ({"fileName": "photo\u0000.jpg"}, (400, "invalid_file_name")),
            ({"fileName": ".."}, (400, "invalid_file_name")),
            ({"fileName": "x" * 300 + ".jpg"}, (400, "invalid_file_name")),
            ({"fileName": None}, (400, "missing_field")),
            ({"fileName": 7}, (400, "invalid_field")),
            ({"phoneNumber": None}, (400, "missing_field")),
            ({"phoneNumber": "call me"}, (400, "invalid_phone_number")),
            # Written like a phone number, but no possible one: certainly not the tenant's.
            ({"phoneNumber": "+1555"}, (403, "forbidden")),
            ({"phoneNumber": "+1 555 123 4567 ext. 9"}, (400, "invalid_phone_number")),
            ({"phoneNumber": "+1" + "5" * 100}, (400, "invalid_phone_number")),
            ({"phoneNumber": "+15550009999"}, (403, "forbidden")),
            ({"phoneNumber": NUMBER_B}, (403, "forbidden")),
            ({"phoneNumberId": NUMBER_B_ID}, (403, "forbidden")),
            ({"phoneNumberId": NUMBER_A_ID, "phoneNumber": "+15550009999"}, (403, "forbidden")),
            ({"tenantId": TENANT_B}, (403, "forbidden")),
            ({"tenantId": "00000000-0000-0000-0000-00000000000X"}, (403, "forbidden")),
            ({"contentType": "jpeg"}, (400, "invalid_field")),
            ({"contentType": "image/jpeg\r\nX: 1"}, (400, "invalid_field")),
            ({"content": "AQID"}, (400, "invalid_body")),
        ],
        ids=lambda value: str(value)[:40],
    )
    def test_bad_field(self, client, changes, expected):
        assert error_of(upload(client, seed_001_body(PHOTO, **changes)))[:2] == expected

    def test_another_tenants_tenant_id_names_nothing_about_it(self, client):
        assert (
            error_of(upload(client, seed_001_body(PHOTO, tenantId=TENANT_B)))[2]
            == "tenantId is not the tenant of these credentials."
        )

    @pytest.mark.parametrize(
        "headers",
        [{}, basic((USER_A[0], "wrong")), {"Authorization": "Bearer nope"}],
        ids=["none", "wrong password", "unknown key"],
    )
    def test_credentials_are_required(self, client, headers):
        response = upload(client, seed_001_body(PHOTO), headers=headers)
        assert error_of(response)[:2] == (401, "unauthorized")
        assert response.headers["WWW-Authenticate"].startswith("Basic")

    def test_convert_query_must_be_a_flag(self, client):
        assert error_of(upload(client, seed_001_body(PHOTO), query="?convert=maybe"))[:2] == (400, "invalid_field")

    @pytest.mark.parametrize("field", ["phoneNumber", "fileName", "contentType", "tenantId", "data", "unknown", None])
    @pytest.mark.parametrize(
        "encoded",
        [b"\xed\xa0\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80", b"\\udfff"],
        ids=["surrogate", "overlong", "past U+10FFFF", "escaped low surrogate"],
    )
    def test_a_string_that_is_not_utf_8_is_an_invalid_body(self, client, field, encoded):
        # What the JSON parser lets through but cannot decode to text: a lone surrogate (ED A0 80), an
        # overlong form, a code point past U+10FFFF, and the escape of a lone low surrogate, which the
        # parser writes as ED BF BF (found by the fuzz test). In a value, or (None) in a member's name.
        body = json.dumps(seed_001_body(PHOTO, as_byte_values=False, unknown="x", **{"x" * 9: "x"})).encode()
        target = f'"{field}": "'.encode() if field else b'"xxxxxxxxx'
        body = body.replace(target, target + encoded, 1)
        response = client.post(UPLOADS, data=body, headers=A, content_type="application/json")
        assert error_of(response) == (400, "invalid_body", INVALID_TEXT)

    @pytest.mark.parametrize(
        "form, expected",
        [
            (lambda: {"phoneNumber": NUMBER_A, "fileName": "a.pdf"}, (400, "missing_field")),
            (
                lambda: {
                    "file": (io.BytesIO(b"%PDF"), "a.pdf"),
                    "data": (io.BytesIO(b"%PDF"), "b.pdf"),
                    "phoneNumber": NUMBER_A,
                },
                (400, "invalid_body"),
            ),
            (
                lambda: {"file": (io.BytesIO(samples.pdf()), "a.pdf"), "phoneNumber": [NUMBER_A, NUMBER_A]},
                (400, "invalid_body"),
            ),
            (
                lambda: {"file": (io.BytesIO(samples.pdf()), "../a.pdf"), "phoneNumber": NUMBER_A},
                (400, "invalid_file_name"),
            ),
            (
                lambda: {"file": (io.BytesIO(samples.pdf()), "a.pdf"), "phoneNumber": NUMBER_A, "convert": "perhaps"},
                (400, "invalid_field"),
            ),
        ],
        ids=["no file part", "two file parts", "repeated field", "file name with a directory", "bad flag"],
    )
    def test_bad_multipart(self, client, form, expected):
        response = client.post(UPLOADS, data=form(), headers=A, content_type="multipart/form-data")
        assert error_of(response)[:2] == expected

    @pytest.mark.parametrize(
        "fields",
        [{"fileName": "x" * (1024 * 1024 + 1)}, {f"field{index}": "x" for index in range(1000)}],
        ids=["text field over 1 MiB", "1002 parts"],
    )
    def test_a_form_over_the_parsers_limits_is_not_called_a_file_too_large(self, client, fields):
        form = {"file": (io.BytesIO(samples.pdf()), "a.pdf"), "phoneNumber": NUMBER_A, **fields}
        response = client.post(UPLOADS, data=form, headers=A, content_type="multipart/form-data")
        assert error_of(response) == (
            413,
            "payload_too_large",
            "A form field other than the file is over 1,048,576 bytes, or the form has more than 1,000 parts.",
        )

    def test_a_multipart_body_over_the_cap_without_a_length_is_a_file_too_large(self, client):
        """Sent in chunks, with no Content-Length: the body's cap stops the form parser mid-file."""
        file = samples.pdf(max_body_bytes(5 * MIB) + 1)
        form = {"file": (io.BytesIO(file), "a.pdf"), "phoneNumber": NUMBER_A}
        environ = EnvironBuilder(UPLOADS, method="POST", headers=A, data=form).get_environ()
        del environ["CONTENT_LENGTH"]
        environ["wsgi.input_terminated"] = True  # what a server sets for a chunked body
        response = client.open(environ)
        assert error_of(response) == TOO_LARGE

    @pytest.mark.parametrize("content_type", ["multipart/form-data", "multipart/form-data; boundary=x"])
    def test_malformed_multipart(self, client, content_type):
        response = client.post(UPLOADS, data=b"--x\r\nnot really multipart", headers=A, content_type=content_type)
        assert error_of(response)[:2] == (400, "missing_field")


class TestFileNames:
    @pytest.mark.parametrize(
        "given, shown, disposition",
        [
            ("café.jpg", "café.jpg", "inline; filename=\"cafe.jpg\"; filename*=UTF-8''caf%C3%A9.jpg"),
            ("\u202egpj.exe", "gpj.exe", 'inline; filename="gpj.exe"'),
            ('"quoted".jpg', "quoted.jpg", 'inline; filename="quoted.jpg"'),
            (" photo.jpg. ", "photo.jpg", 'inline; filename="photo.jpg"'),
            # Fullwidth quotes and equals sign: their ASCII forms must not end the quoted name.
            (
                "a\uff02; filename\uff1d\uff02x.html",
                "a\uff02; filename\uff1d\uff02x.html",
                'inline; filename="a_; filename=_x.html"; '
                "filename*=UTF-8''a%EF%BC%82%3B%20filename%EF%BC%9D%EF%BC%82x.html",
            ),
        ],
        ids=["accented", "bidi override", "quotes", "edge blanks and dots", "fullwidth quotes"],
    )
    def test_names_are_sanitized_for_display(self, client, given, shown, disposition):
        answer = upload(client, seed_001_body(PHOTO, fileName=given)).get_json()
        assert answer["fileName"] == shown
        assert client.get(local(answer["url"])).headers["Content-Disposition"] == disposition


class TestTenantWithTwoNumbers:
    SECOND_NUMBER = "+15551230000"

    @pytest.fixture
    def settings_overrides(self):
        return {
            "tenants": [
                {
                    "id": TENANT_A,
                    "phone_numbers": [
                        {"id": NUMBER_A_ID, "number": NUMBER_A},
                        {"id": "second", "number": self.SECOND_NUMBER},
                    ],
                },
                {"id": TENANT_B, "phone_numbers": [{"id": NUMBER_B_ID, "number": NUMBER_B}]},
            ]
        }

    def test_either_number_by_either_field(self, client):
        assert (
            upload(client, seed_000_body(PHOTO, phoneNumberId="second")).get_json()["phoneNumber"] == self.SECOND_NUMBER
        )
        assert (
            upload(client, seed_001_body(PHOTO, phoneNumber=self.SECOND_NUMBER)).get_json()["phoneNumberId"] == "second"
        )

    def test_both_fields_naming_different_numbers(self, client):
        response = upload(client, seed_000_body(PHOTO, phoneNumber=self.SECOND_NUMBER))
        assert error_of(response) == (400, "invalid_field", "phoneNumber and phoneNumberId name different numbers.")


class TestConvert:
    def test_bmp_becomes_png_with_a_matching_name(self, client):
        response = upload(
            client, seed_001_body(samples.bmp(), fileName="photo.bmp", contentType="image/bmp", convert=True)
        )
        assert response.status_code == 201, response.get_data(as_text=True)
        answer = response.get_json()
        assert (answer["contentType"], answer["fileName"]) == ("image/png", "photo.png")
        assert answer["warnings"] == [
            "The declared type image/bmp differs from the stored type image/png, which is what the URL serves."
        ]
        assert Image.open(io.BytesIO(stored_bytes(client, answer))).format == "PNG"

    def test_photographic_tiff_becomes_jpeg_when_asked_in_the_query(self, client):
        body = seed_001_body(samples.tiff((64, 48), photographic=True), fileName="scan.tiff", contentType=None)
        answer = upload(client, body, query="?convert=true").get_json()
        assert (answer["contentType"], answer["fileName"]) == ("image/jpeg", "scan.jpg")

    def test_svg_is_still_refused(self, client):
        response = upload(client, seed_001_body(samples.svg(), contentType="image/png", convert=True))
        assert error_of(response) == (415, "unsupported_media_type", "Unsupported media type: image/svg+xml")

    def test_allowed_types_pass_unchanged_in_name(self, client):
        answer = upload(client, seed_001_body(PHOTO, convert=True)).get_json()
        assert (answer["contentType"], answer["fileName"]) == ("image/jpeg", "product-image.jpg")


class TestConvertScalesDown:
    """With a 64 KiB limit, so the oversized image stays small to build."""

    @pytest.fixture
    def settings_overrides(self):
        return {"media": {"max_bytes": 64 * 1024}}

    def test_image_over_the_limit_is_scaled_down_to_fit(self, client):
        noise = samples.encode(samples.photo((300, 200)), "PNG")  # incompressible: ~180 KB
        assert len(noise) > 64 * 1024
        refused = upload(client, seed_001_body(noise, fileName="noise.png", contentType="image/png"))
        assert error_of(refused) == (413, "payload_too_large", "Media file exceeds maximum size of 64KB")
        answer = upload(
            client, seed_001_body(noise, fileName="noise.png", contentType="image/png"), query="?convert=true"
        ).get_json()
        assert answer["size"] <= 64 * 1024 and answer["contentType"] == "image/png"
        width, height = Image.open(io.BytesIO(stored_bytes(client, answer))).size
        assert width < 300 and height < 200 and abs(width / height - 1.5) < 0.05

    def test_byte_array_over_the_limit(self, client):
        response = upload(client, seed_001_body(samples.pdf(64 * 1024 + 1)))
        assert error_of(response) == (413, "payload_too_large", "Media file exceeds maximum size of 64KB")

    def test_conversion_takes_sources_up_to_four_times_the_limit(self, client):
        response = upload(client, seed_001_body(samples.pdf(4 * 64 * 1024 + 1)), query="?convert=true")
        assert error_of(response) == (413, "payload_too_large", "Media file exceeds maximum size of 256KB")


class TestObservability:
    def test_one_log_line_and_a_count_per_upload(self, client, caplog):
        def count(outcome: str) -> float:
            return REGISTRY.get_sample_value("media_uploads_total", {"outcome": outcome}) or 0.0

        stored, refused = count("stored"), count("invalid_byte")
        with caplog.at_level(logging.INFO, logger="webhook_service.media_api"):
            upload(client, seed_001_body(PHOTO))
            upload(client, seed_001_body(PHOTO, data=[1, 300]))
        assert (count("stored"), count("invalid_byte")) == (stored + 1, refused + 1)
        lines = [record for record in caplog.records if record.getMessage() == "media_upload"]
        assert [line.fields["outcome"] for line in lines] == ["stored", "invalid_byte"]
        first = lines[0].fields
        assert first["phone"] == "+15*******67" and first["encoding"] == "bytes"
        assert first["size"] > 0 and first["content_type"] == "image/jpeg"
        logged = repr([line.fields for line in lines])
        assert USER_A[1] not in logged and NUMBER_A not in logged and "255, 216" not in logged

    def test_no_scratch_files_are_left_behind(self, client, runtime):
        upload(client, seed_001_body(PHOTO))
        upload(client, seed_001_body(samples.bmp()))
        assert list(runtime.work_dir.iterdir()) == []

    def test_refused_upload_leaves_no_record(self, client, runtime):
        upload(client, seed_001_body(samples.svg()))
        with runtime.db.reading() as session:
            assert session.scalar(sa.select(sa.func.count()).select_from(MediaUpload)) == 0
