"""The event feed's types: what `feed.py` appends and the configuration may name. A module of their own,
with no database code, so that reading the configuration does not load SQLAlchemy and the drivers."""

MESSAGE_RECEIVED = "message.received"
MESSAGE_STATUS = "message.status"
ATTACHMENT_STORED = "attachment.stored"
ATTACHMENT_REJECTED = "attachment.rejected"
ATTACHMENT_FAILED = "attachment.failed"
# Push delivery gave up on one of the tenant's endpoints (delivery/engine.py).
ENDPOINT_DISABLED = "endpoint.disabled"
TYPES = (MESSAGE_RECEIVED, MESSAGE_STATUS, ATTACHMENT_STORED, ATTACHMENT_REJECTED, ATTACHMENT_FAILED, ENDPOINT_DISABLED)
