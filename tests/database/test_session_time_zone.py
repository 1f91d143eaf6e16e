"""Times within hours of the ends of the years 1 to 9999 read back whatever time zone the PostgreSQL
server gives its sessions. A provider may send one (a .NET client's DateTime.MinValue is
0001-01-01T00:00:00Z); in a session zone east or west of UTC, PostgreSQL hands it back in year 0 or
10000, which the driver cannot represent: the message was stored, and every read of it was a 500."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from tests.support.media_uploads import A

# Zones that move the stored times past the ends: +14:00 (Kiritimati), and New York's local mean time
# of year 1 (-04:56:02).
ZONES = ("Pacific/Kiritimati", "America/New_York")
FIRST = "0001-01-01T00:00:00Z"
LAST = "9999-12-31T23:59:59Z"


# SQLite stores times as UTC text: no session time zone applies.
pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@pytest.fixture(params=ZONES)
def settings_overrides(request, database_url) -> dict:
    # libpq's `options`: the session starts in this zone, as if the server were configured with it.
    options = quote(f"-c TimeZone={request.param}")
    return {"database_url": f"{database_url}?options={options}"}


def _status(provider_message_id: str, occurred_at: str) -> bytes:
    data = {"providerMessageId": provider_message_id, "status": "delivered", "occurredAt": occurred_at}
    return json.dumps({"type": "message.status", "data": data}).encode()


def test_times_at_the_ends_of_the_years_read_back(client):
    for provider_message_id, occurred_at in (("first", FIRST), ("last", LAST)):
        response = client.post("/webhooks/standard/open", data=_status(provider_message_id, occurred_at))
        assert response.status_code == 200, response.get_data(as_text=True)
    listed = client.get("/api/v1/messages", headers=A)
    assert listed.status_code == 200, listed.get_data(as_text=True)
    times = {message["providerMessageId"]: message["statusUpdatedAt"] for message in listed.get_json()["messages"]}
    assert times == {"first": "0001-01-01T00:00:00Z", "last": "9999-12-31T23:59:59Z"}
