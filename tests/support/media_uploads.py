"""Building media-upload requests the way seed 000's and seed 001's clients do, and reading the answers."""

from __future__ import annotations

import base64
from urllib.parse import urlsplit

from tests.fixtures.app import NUMBER_A, NUMBER_A_ID, TENANT_A, USER_A, USER_B

UPLOADS = "/api/v1/media"


def basic(user: tuple[str, str]) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(":".join(user).encode()).decode()}


A = basic(USER_A)
B = basic(USER_B)


def seed_001_body(data: bytes, /, *, as_byte_values: bool = True, **changes: object) -> dict:
    """Seed 001's request: `data` as an array of byte values (its Python and Node examples) or as
    base64 (what C#'s serializer makes of byte[])."""
    body = {
        "phoneNumber": NUMBER_A,
        "fileName": "product-image.jpg",
        "contentType": "image/jpeg",
        "data": list(data) if as_byte_values else base64.b64encode(data).decode(),
        "tenantId": TENANT_A,
    }
    return {**body, **changes}


def seed_000_body(data: bytes, /, **changes: object) -> dict:
    body = {
        "phoneNumberId": NUMBER_A_ID,
        "fileName": "product-image.jpg",
        "mimeType": "image/jpeg",
        "content": base64.b64encode(data).decode(),
    }
    return {**body, **changes}


def upload(client, body: dict, *, headers: dict | None = None, query: str = ""):
    return client.post(UPLOADS + query, json=body, headers=A if headers is None else headers)


def local(url: str) -> str:
    """An absolute URL of this service as the Flask test client takes it (path and query)."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


def error_of(response) -> tuple[int, str, str]:
    """(status, code, message) of an error answer, which must have exactly the documented shape."""
    body = response.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return response.status_code, body["error"]["code"], body["error"]["message"]
