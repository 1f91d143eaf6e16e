"""The fields of an upload request, checked: the file name, the declared type, and that the tenant and
the sending number belong to the caller. Raises ApiError (400 for a malformed field, 403 for a tenant or
number that is not the caller's)."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from storage.headers import MAX_FILENAME_CHARS, sanitize_filename
from webhook_service.api.errors import ApiError
from webhook_service.api.upload_body import UploadBody
from webhook_service.config.model import PhoneNumber, Tenant
from webhook_service.media.validation import canonical_content_type
from webhook_service.model.phone import normalize_e164

# Control characters (CR, LF, NUL...) and unpaired surrogates, which no header or database can hold.
_REFUSED_NAME_CATEGORIES = frozenset({"Cc", "Cs"})
# A phone number as written: digits with an optional "+" and the usual separators. Anything else is a
# 400; a number written so that is not one of the tenant's (or is no possible number at all) a 403.
PHONE_NUMBER_PATTERN = r"^\+?[0-9 ().-]*[0-9][0-9 ().-]*$"
MAX_PHONE_NUMBER_CHARS = 64
# The names check_file_name takes, as the document states them: no directory separator or control
# character, and at least one character that sanitize_filename neither removes (format, line and
# paragraph separator characters, quotes) nor trims (white space, dots). Written out from the Unicode
# database of the Python that runs the service; tests/api/test_upload_contract.py derives it again and
# checks it against check_file_name. Surrogates cannot be in a pattern (a name with one is refused as a
# control character all the same), nor can characters beyond the Basic Multilingual Plane: a name made
# only of astral format characters (U+E0041...) is the one the pattern takes and the check refuses.
FILE_NAME_PATTERN = (
    '^[^\\x00-\\x1f/\\\\\\x7f-\\x9f]*[^\\x00- ".-/\\\\\\x7f-\xa0\xad\u0600-\u0605\u061c\u06dd'
    "\u070f\u0890-\u0891\u08e2\u1680\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f"
    "\u3000\ufeff\ufff9-\ufffb][^\\x00-\\x1f/\\\\\\x7f-\\x9f]*$"
)
# type/subtype with optional parameters, printable ASCII: it is recorded, and compared with the sniffed type.
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,127}"
_MEDIA_TYPE = re.compile(rf"{_TOKEN}/{_TOKEN}(?:;[\x20-\x7e]*)?")
# The declared type as the document states it: a media type, blank, or (JSON) null. Surrounding spaces
# and tabs are ignored.
MEDIA_TYPE_PATTERN = rf"^[ \t]*(?:{_TOKEN}/{_TOKEN}(?:;[\x20-\x7e]*)?[ \t]*)?$"
MAX_MEDIA_TYPE_CHARS = 255
_UNKNOWN_TYPE = "application/octet-stream"


@dataclass(frozen=True)
class UploadFields:
    file_name: str  # sanitized: a display name for Content-Disposition
    declared_content_type: str | None
    number: PhoneNumber  # one of the tenant's provisioned numbers


def check_upload_fields(body: UploadBody, tenant: Tenant, *, region: str) -> UploadFields:
    fields = body.fields
    if not body.has_file:
        raise ApiError(
            400,
            "missing_field",
            "The file is required: data (or content) as a base64 string or an "
            "array of byte values, or a multipart part named file.",
        )
    file_name = fields.get("fileName")
    if file_name is None:
        raise ApiError(400, "missing_field", "fileName is required.")
    if fields.get("phoneNumber") is None and fields.get("phoneNumberId") is None:
        raise ApiError(400, "missing_field", "phoneNumber (or phoneNumberId) is required.")
    checked_name = check_file_name(file_name)
    declared = (
        _declared_type(fields.get("contentType"), "contentType")
        or _declared_type(fields.get("mimeType"), "mimeType")
        or _data_uri_type(body.data_uri_type)
    )
    tenant_id = fields.get("tenantId")
    if tenant_id is not None and tenant_id != tenant.id:
        # Says nothing about whether that tenant exists.
        raise ApiError(403, "forbidden", "tenantId is not the tenant of these credentials.")
    number = _sending_number(fields.get("phoneNumber"), fields.get("phoneNumberId"), tenant, region)
    return UploadFields(file_name=checked_name, declared_content_type=declared, number=number)


def check_file_name(name: str) -> str:
    """The name to show for the file. A name with directories or control characters is refused rather
    than repaired: it is a client bug (or a probe) worth hearing about."""
    if "/" in name or "\\" in name:
        raise ApiError(400, "invalid_file_name", "fileName must be a plain file name, without directories.")
    if any(unicodedata.category(char) in _REFUSED_NAME_CATEGORIES for char in name):
        raise ApiError(400, "invalid_file_name", "fileName must not contain control characters such as line breaks.")
    if len(name) > MAX_FILENAME_CHARS:
        raise ApiError(400, "invalid_file_name", f"fileName must be at most {MAX_FILENAME_CHARS} characters.")
    sanitized = sanitize_filename(name)
    if not sanitized:
        raise ApiError(400, "invalid_file_name", "fileName must name a file, such as product-image.jpg.")
    return sanitized


def _declared_type(value: str | None, name: str) -> str | None:
    if value is None:
        return None
    if len(value) > MAX_MEDIA_TYPE_CHARS or not re.fullmatch(MEDIA_TYPE_PATTERN, value):
        raise ApiError(400, "invalid_field", f"{name} must be a media type such as image/jpeg.")
    value = value.strip(" \t")
    if not value:
        return None
    # What curl -F and many clients send when they do not know: no declaration at all.
    return None if canonical_content_type(value) == _UNKNOWN_TYPE else value


def _data_uri_type(value: str | None) -> str | None:
    # Only a prefix that reads as a media type counts; the file itself is what gets checked anyway.
    return value if value and len(value) <= MAX_MEDIA_TYPE_CHARS and _MEDIA_TYPE.fullmatch(value) else None


def _sending_number(phone_number: str | None, phone_number_id: str | None, tenant: Tenant, region: str) -> PhoneNumber:
    by_number = by_id = None
    if phone_number is not None:
        if len(phone_number) > MAX_PHONE_NUMBER_CHARS or not re.fullmatch(PHONE_NUMBER_PATTERN, phone_number):
            raise ApiError(
                400, "invalid_phone_number", "phoneNumber must be a phone number in E.164 format, such as +15551234567."
            )
        normalized = normalize_e164(phone_number, region)
        by_number = next((n for n in tenant.phone_numbers if normalized and n.number == normalized), None)
        if by_number is None:
            # Written like a phone number, but not one of the tenant's: no possible number is either.
            raise ApiError(
                403, "forbidden", f"phoneNumber {normalized or phone_number} is not provisioned for your tenant."
            )
    if phone_number_id is not None:
        by_id = next((n for n in tenant.phone_numbers if n.id == phone_number_id), None)
        if by_id is None:
            raise ApiError(403, "forbidden", "phoneNumberId is not one of your tenant's phone numbers.")
    if by_number is not None and by_id is not None and by_number != by_id:
        raise ApiError(400, "invalid_field", "phoneNumber and phoneNumberId name different numbers.")
    number = by_number or by_id
    assert number is not None  # the caller made sure one of them was given
    return number
