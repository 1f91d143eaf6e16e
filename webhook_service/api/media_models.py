"""The media API's parameters and request bodies (api/media.py), as pydantic models.

Only the path model validates. The rest documents: an upload's body is read by the streaming parser
(api/upload_body.py), which never holds a 25 MB array of byte values in memory as a model would, and
checked by api/upload_fields.py; `convert` is read by upload_body.parse_flag; a stable link's query is
checked by its signature, which covers every parameter."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, RootModel
from pydantic.json_schema import SkipJsonSchema

from storage.headers import MAX_FILENAME_CHARS
from webhook_service.api.parameters import OptionalText
from webhook_service.api.upload_fields import (
    FILE_NAME_PATTERN,
    MAX_MEDIA_TYPE_CHARS,
    MAX_PHONE_NUMBER_CHARS,
    MEDIA_TYPE_PATTERN,
    PHONE_NUMBER_PATTERN,
)

_CONVERT = "Convert images carriers refuse (BMP, TIFF...) and scale down images over the limit."
_FILE_DATA = (
    "The file: base64 (a `data:<type>;base64,` prefix, line breaks and missing padding are accepted) "
    "or an array of byte values."
)
ByteValue = Annotated[int, Field(ge=0, le=255)]
# An empty file is refused: at least one base64 character, at least one byte value.
Base64 = Annotated[str, Field(min_length=1, json_schema_extra={"format": "byte"})]
FileData = Annotated[Base64 | Annotated[list[ByteValue], Field(min_length=1)], Field(description=_FILE_DATA)]
# The fields' rules are upload_fields.py's own patterns, so the document says what the checks do.
FileName = Annotated[
    str,
    Field(
        max_length=MAX_FILENAME_CHARS,
        pattern=FILE_NAME_PATTERN,
        description="A plain file name (no directory); shown in Content-Disposition only.",
    ),
]
SendingNumber = Annotated[
    str,
    Field(
        max_length=MAX_PHONE_NUMBER_CHARS,
        pattern=PHONE_NUMBER_PATTERN,
        description="The sending number, E.164 (+15551234567); one of the tenant's.",
    ),
]
DeclaredType = Annotated[str, Field(max_length=MAX_MEDIA_TYPE_CHARS, pattern=MEDIA_TYPE_PATTERN)]
_DECLARED = "The declared type (recorded; the sniffed type wins); blank or null: not declared."


class MediaPath(BaseModel):
    model_config = ConfigDict(frozen=True)

    media_id: str = Field(alias="mediaId")


class UploadQuery(BaseModel):
    convert: bool = Field(False, description=_CONVERT)


class StableLinkQuery(BaseModel):
    sig: str = Field(description="The link's signature, as `stableUrl` gives it.")
    expires: OptionalText = Field(None, description="Present when stable URLs are configured to expire.")


class _UploadFields(BaseModel):
    # Unknown fields are ignored, as the parser ignores them. A null is the field left out (required
    # ones are then missing).
    fileName: FileName
    tenantId: str | None = Field(None, description="Optional; must be the caller's tenant.")
    convert: bool | None = Field(False, description=_CONVERT)


class UploadByPhoneNumber(_UploadFields):
    """Seed 001's shape."""

    phoneNumber: SendingNumber
    contentType: DeclaredType | None = Field(None, description=_DECLARED)
    data: FileData


class UploadByPhoneNumberId(_UploadFields):
    """Seed 000's shape."""

    phoneNumberId: str = Field(description="The sending number's id.")
    mimeType: DeclaredType | None = Field(None, description=_DECLARED)
    content: FileData


class UploadRequest(RootModel[UploadByPhoneNumber | UploadByPhoneNumberId]):
    """Seed 001's shape (phoneNumber, data) or seed 000's (phoneNumberId, content). The parser also takes
    the two mixed; with both phoneNumber and phoneNumberId, they must name the same number."""


def _either_number(schema: dict) -> None:
    # phoneNumber or phoneNumberId, not blank (a blank form field is one left out).
    schema["anyOf"] = [
        {"required": [name], "properties": {name: {"minLength": 1}}} for name in ("phoneNumber", "phoneNumberId")
    ]


# A form field that follows the JSON field's pattern, or is left blank.
BlankOrNumber = Annotated[str, Field(max_length=MAX_PHONE_NUMBER_CHARS, pattern=f"^(?:{PHONE_NUMBER_PATTERN[1:-1]})?$")]
BlankOrFileName = Annotated[str, Field(max_length=MAX_FILENAME_CHARS, pattern=f"^(?:{FILE_NAME_PATTERN[1:-1]})?$")]


class MultipartUpload(BaseModel):
    """Either seed's fields as form fields, and the file as a part named `file`; fileName and
    contentType default to the file part's own. A field left blank is one left out."""

    model_config = ConfigDict(json_schema_extra=_either_number)

    file: bytes
    phoneNumber: BlankOrNumber | SkipJsonSchema[None] = None
    phoneNumberId: OptionalText = None
    fileName: BlankOrFileName | SkipJsonSchema[None] = Field(
        None, description="Required unless the file part has a file name of its own."
    )
    contentType: DeclaredType | SkipJsonSchema[None] = None
    mimeType: DeclaredType | SkipJsonSchema[None] = None
    tenantId: OptionalText = None
    convert: bool = Field(False, description=_CONVERT)
