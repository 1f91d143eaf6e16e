"""The answers of the read and media APIs, as pydantic models for the OpenAPI document. They describe,
they do not build: the JSON is made by model/message_json.py and api/media.py, and the test suite
checks real answers against these schemas (schemathesis, and tests/api/test_openapi.py for uploads).
Every field is always present (so required), null where the type says so."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from webhook_service.database import feed
from webhook_service.database.tables import ATTACHMENT_STATES


class _Answer(BaseModel):
    # Answers are documented, never parsed: the names are the JSON's own, camelCase as the seeds use.
    model_config = ConfigDict(frozen=True)


class ErrorDetail(_Answer):
    code: str = Field(description="Stable and machine-readable, e.g. invalid_parameter.")
    message: str = Field(description="For people; for a bad parameter it starts with the parameter's name.")


class Error(_Answer):
    """Every error answer."""

    error: ErrorDetail


class StatusEvent(_Answer):
    """One delivery report, as received."""

    status: str
    providerStatus: str
    errorCode: str | None
    errorMessage: str | None
    occurredAt: datetime | None
    receivedAt: datetime
    applied: bool = Field(description="False when it arrived after a later status and did not change the message.")


class Attachment(_Answer):
    id: str
    index: int
    name: str = Field(
        min_length=1,
        max_length=200,
        description=(
            "A file name to save it under, never a path: the provider's, the URL's last segment or "
            "attachment-<index>; with the sniffed type's extension once stored."
        ),
    )
    declaredContentType: str | None
    contentType: str | None
    size: int | None
    sha256: str | None
    status: Literal[ATTACHMENT_STATES]  # type: ignore[valid-type]
    reasonCode: str | None
    reason: str | None
    attempts: int
    url: str | None = Field(description="Signed; present once the attachment is stored.")


class Message(_Answer):
    id: str
    provider: str
    connection: str
    tenantId: str
    providerMessageId: str
    direction: Literal["inbound", "outbound"]
    sender: str | None = Field(alias="from")
    to: list[str]
    text: str | None
    subject: str | None
    status: str | None
    providerStatus: str | None
    statusUpdatedAt: datetime | None
    occurredAt: datetime | None
    receivedAt: datetime
    hasContent: bool = Field(description="False while the message is known only from delivery reports.")
    extra: dict[str, Any] = Field(description="Provider facts not mapped to the fields above.")
    attachments: list[Attachment]
    statusHistory: list[StatusEvent] = Field(description="The newest 100 status reports, oldest first.")
    statusHistoryTruncated: bool = Field(
        description="True when the message has more status reports than statusHistory holds (older ones left out)."
    )


class MessagePage(_Answer):
    messages: list[Message]
    nextCursor: str | None = Field(description="Null on the last page.")


class Event(_Answer):
    id: str
    type: Literal[feed.TYPES]  # type: ignore[valid-type]
    createdAt: datetime
    data: dict[str, Any]


class EventPage(_Answer):
    events: list[Event]
    nextCursor: str = Field(
        description=(
            "Pass it back as `after`. After a full page, its last event; otherwise the tenant's last event"
            " (with `type`, past the events of other types the page read), or `after` when there is none."
        )
    )


class Upload(_Answer):
    """A file uploaded for outbound MMS."""

    id: str
    uri: str = Field(description="The signed URL to put in mediaUrls (seed 001's name).")
    url: str = Field(description="The same URL (seed 000's name).")
    expiresAt: datetime = Field(description="When uri/url stop working.")
    stableUrl: str = Field(
        description="A link on this service that redirects to a fresh signed URL; works until the upload is deleted."
    )
    stableUrlExpiresAt: datetime | None = Field(description="Null: until deleted.")
    fileName: str
    contentType: str = Field(description="The stored (sniffed) type.")
    mimeType: str = Field(description="The same type (seed 000's name).")
    declaredContentType: str | None
    size: int
    sha256: str
    phoneNumber: str
    phoneNumberId: str
    tenantId: str
    createdAt: datetime
    warnings: list[str] = Field(description="For example: the declared type differs from the stored one.")
