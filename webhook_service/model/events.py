"""The canonical events every provider adapter produces. The intake stores only these (plus the raw
request), so the rest of the service never needs to know which provider a message came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

Direction = Literal["inbound", "outbound"]


@dataclass(frozen=True)
class MediaRef:
    """An attachment as the provider announced it; downloaded and checked later by the worker."""

    url: str
    content_type: str | None = None  # declared by the provider; the sniffed type decides
    name: str | None = None
    size: int | None = None  # declared; the downloaded size decides


@dataclass(frozen=True)
class MessageEvent:
    """A message with its content: an inbound message, or an outbound one a provider reports in full."""

    provider_message_id: str
    direction: Direction
    from_: str | None
    to: tuple[str, ...]
    text: str | None = None
    subject: str | None = None
    media: tuple[MediaRef, ...] = ()
    occurred_at: datetime | None = None
    # Provider facts we do not map (segments, account ids...) kept small and JSON-serializable.
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class StatusEvent:
    """A delivery report for one message."""

    provider_message_id: str
    status: str  # canonical, see statuses.py
    provider_status: str
    occurred_at: datetime | None = None
    error_code: str | None = None
    error_message: str | None = None
    # Identifies this report among the message's reports; retries of one report share it.
    # Adapters without a provider event id leave it empty and the intake derives one.
    event_id: str | None = None
    # Addresses, when the report carries them: they describe a message we have not seen yet.
    from_: str | None = None
    to: tuple[str, ...] = ()


Event = MessageEvent | StatusEvent
