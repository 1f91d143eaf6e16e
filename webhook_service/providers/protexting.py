"""ProTexting (seed 004): the mapping adapter preset to ProTexting's vocabulary.

ProTexting publishes no push format (inbound messages or delivery reports pushed to a webhook); its
send API, the one thing documented, uses PascalCase fields (`Id`, `MobilePhone`, `SendFrom`,
`Message`, `Subject`, `MmsTemplateId`, `ResourceLink`), an `access_token` query parameter, and answers
in JSON or XML (`<response><Id>...</Id><DeliveryReportUrl>...</DeliveryReportUrl><Message>...</Message>
</response>`). Everything below is therefore ASSUMED, modelled on that API:
- Bodies: JSON, form or XML (chosen by Content-Type, else by the first character); an XML push looks
  like the API's answers: a root element whose children are the fields (its name does not matter).
- Fields: the message id is `Id` (else `MessageId`); on an inbound message `MobilePhone` is the
  subscriber (from) and `SendFrom` (else `ShortCode`) our number (to); on a delivery report, which is
  about an outbound message, the same fields are read the other way round. Text `Message`, subject
  `Subject`, `MmsTemplateId` kept on the message. Media links: `ResourceLink` (the send API's name),
  else `MediaUrl`, else `MmsUrl`, one or several (a JSON list, a repeated form field or XML element);
  their types in `MediaContentType` (else `ContentType`), names in `FileName`, by position.
- Delivery reports: status in `Status` (else `DeliveryStatus`), error in `ErrorCode`/`ErrorMessage`,
  time in `Timestamp` (else `Date`, `DeliveryDate`). Any status makes the request a delivery report
  (rule "any_status"): ProTexting's answers put a human sentence in `Message`, which a report may echo.
  The status words are unknown: STATUS_MAP adds the likely ones to the mapping adapter's defaults (the
  canonical words and SMPP receipt states, compared case-insensitively). No event id is documented,
  so reports are deduplicated on (status, error code, time).
- Auth: the connection's secret as the `access_token` query parameter (as ProTexting's own API is
  called; the intake redacts it before storing the request), and/or Basic auth (connection.basic_auth).
- Acknowledgement: "OK" as text/plain.
A connection may override any of this in its options, exactly as for the mapping adapter: `fields`
and `status_map` merge key by key with the preset, any other option replaces the preset's.
"""

from __future__ import annotations

from typing import Any, ClassVar

from webhook_service.providers.mapping import MappingAdapter

# Guesses: words a delivery report plausibly uses beyond the canonical ones the mapping adapter knows.
STATUS_MAP = {
    "pending": "queued",
    "processing": "sending",
    "success": "delivered",
    "undeliverable": "undelivered",
    "error": "failed",
}

PRESET: dict[str, Any] = {
    "body_format": "auto",
    "fields": {
        "message_id": ["Id", "MessageId"],
        "from": ["MobilePhone"],
        "to": ["SendFrom", "ShortCode"],
        "outbound_from": ["SendFrom", "ShortCode"],
        "outbound_to": ["MobilePhone"],
        "text": ["Message"],
        "subject": ["Subject"],
        "media_url": ["ResourceLink", "MediaUrl", "MmsUrl"],
        "media_content_type": ["MediaContentType", "ContentType"],
        "media_name": ["FileName"],
        "media_size": [],
        "status": ["Status", "DeliveryStatus"],
        "error_code": ["ErrorCode"],
        "error_message": ["ErrorMessage"],
        "occurred_at": ["Timestamp", "Date", "DeliveryDate"],
        "event_id": [],
        "extra": {"mmsTemplateId": ["MmsTemplateId"]},
    },
    "event_kind": {"rule": "any_status"},
    "status_map": STATUS_MAP,
    "auth": {"kind": "token", "query_parameter": "access_token"},
}


class ProTextingAdapter(MappingAdapter):
    name = "protexting"
    preset: ClassVar[dict[str, Any]] = PRESET
    # Redacted by the intake anyway; named here because this adapter depends on it.
    secret_query_params = ("access_token",)
