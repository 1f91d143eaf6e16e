"""The media API's parameters and request bodies (api/media.py), as pydantic models.

Only the path model validates. The rest documents: an upload's body is read by the streaming parser
(api/upload_body.py), which never holds a 25 MB array of byte values in memory as a model would, and
checked by api/upload_fields.py; `convert` is read by upload_body.parse_flag; a stable link's query is
checked by its signature, which covers every parameter."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, RootModel

from webhook_service.api.parameters import OptionalText

_CONVERT = "Convert images carriers refuse (BMP, TIFF...) and scale down images over the limit."
_FILE_DATA = (
    "The file: base64 (a `data:<type>;base64,` prefix, line breaks and missing padding are accepted) "
    "or an array of byte values."
)
ByteValue = Annotated[int, Field(ge=0, le=255)]
Base64 = Annotated[str, Field(json_schema_extra={"format": "byte"})]
FileData = Annotated[Base64 | list[ByteValue], Field(description=_FILE_DATA)]


class MediaPath(BaseModel):
    model_config = ConfigDict(frozen=True)

    media_id: str = Field(alias="mediaId")


class UploadQuery(BaseModel):
    convert: bool = Field(False, description=_CONVERT)


class StableLinkQuery(BaseModel):
    sig: str = Field(description="The link's signature, as `stableUrl` gives it.")
    expires: OptionalText = Field(None, description="Present when stable URLs are configured to expire.")


class _UploadFields(BaseModel):
    # Unknown fields are ignored, as the parser ignores them.
    fileName: str = Field(description="A plain file name; shown in Content-Disposition only.")
    tenantId: str | None = Field(None, description="Optional; must be the caller's tenant.")
    convert: bool = Field(False, description=_CONVERT)


class UploadByPhoneNumber(_UploadFields):
    """Seed 001's shape."""

    phoneNumber: str = Field(description="The sending number, E.164; one of the tenant's.")
    contentType: str | None = Field(None, description="The declared type (recorded; the sniffed type wins).")
    data: FileData


class UploadByPhoneNumberId(_UploadFields):
    """Seed 000's shape."""

    phoneNumberId: str = Field(description="The sending number's id.")
    mimeType: str | None = Field(None, description="The declared type (recorded; the sniffed type wins).")
    content: FileData


class UploadRequest(RootModel[UploadByPhoneNumber | UploadByPhoneNumberId]):
    """Seed 001's shape (phoneNumber, data) or seed 000's (phoneNumberId, content). The parser also takes
    the two mixed; with both phoneNumber and phoneNumberId, they must name the same number."""


class MultipartUpload(BaseModel):
    """Either seed's fields as form fields, and the file as a part named `file`; fileName and
    contentType default to the file part's own."""

    file: bytes
    phoneNumber: OptionalText = None
    phoneNumberId: OptionalText = None
    fileName: OptionalText = None
    contentType: OptionalText = None
    mimeType: OptionalText = None
    tenantId: OptionalText = None
    convert: bool = Field(False, description=_CONVERT)
