"""Read API inputs that schemathesis and fault testing found answered with a 500: NUL characters
(PostgreSQL text cannot hold them), digits that str.isdigit() accepts but int() does not, and times
whose offset moves them out of the years a datetime holds."""

from __future__ import annotations

import pytest

from tests.support.media_uploads import A, error_of
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


@pytest.mark.parametrize(
    "query",
    [
        "since=9999-12-31T23:59:59-05:00",
        "since=0001-01-01T00:00:00%2B05:00",
        "until=9999-12-31T23:59:59-05:00",
        "until=0001-01-01T00:00:00%2B00:01",
    ],
)
def test_a_time_outside_the_years_a_datetime_holds_is_a_bad_parameter(client, query):
    # The offset moves these past year 9999 or before year 1 once converted to UTC.
    name = query.split("=", 1)[0]
    response = client.get(f"/api/v1/messages?{query}", headers=A)
    assert error_of(response) == (
        400,
        "invalid_parameter",
        f"{name}: expected an ISO 8601 time such as 2026-01-31T12:00:00Z",
    )
