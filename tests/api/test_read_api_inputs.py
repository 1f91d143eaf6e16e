"""Read API inputs that schemathesis found answered with a 500: NUL characters (PostgreSQL text cannot
hold them) and digits that str.isdigit() accepts but int() does not."""

from __future__ import annotations

import pytest

from tests.support.media_uploads import A
from tests.support.standard import inbound_body, post_standard


@pytest.mark.parametrize(
    "path, status",
    [
        ("/api/v1/messages?provider=a%00b&connection=%00&providerMessageId=x%00&from=%00&to=1%00", 200),
        ("/api/v1/messages/a%00b", 404),
        ("/api/v1/providers/stan%00dard/messages/m%001", 404),
        ("/api/v1/messages?limit=%C2%B2", 400),  # "²"
        ("/api/v1/messages?limit=" + "1" * 5000, 400),
        ("/api/v1/messages?cursor=%D9%A1", 400),  # ARABIC-INDIC DIGIT ONE
        ("/api/v1/events?after=%C2%B9&limit=%C2%B3", 400),
    ],
    ids=[
        "nul in filters",
        "nul in id",
        "nul in provider id",
        "superscript limit",
        "huge limit",
        "arabic-indic cursor",
        "superscript after",
    ],
)
def test_answered_without_a_server_error(client, path, status):
    post_standard(client, inbound_body("m-1"))
    assert client.get(path, headers=A).status_code == status
