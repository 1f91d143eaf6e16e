"""Read API inputs that schemathesis and fault testing found answered with a 500: NUL characters
(PostgreSQL text cannot hold them), digits that str.isdigit() accepts but int() does not, and times
whose offset moves them out of the years a datetime holds."""

from __future__ import annotations

from urllib.parse import quote

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
    ("query", "found"),
    [
        ("since=9999-12-31T23:59:59-05:00", 0),
        ("since=0001-01-01T00:00:00%2B05:00", 1),
        ("until=9999-12-31T23:59:59-05:00", 1),
        ("until=0001-01-01T00:00:00%2B00:01", 0),
    ],
)
def test_a_time_outside_the_years_a_datetime_holds_is_the_earliest_or_latest(client, query, found):
    """Valid RFC 3339 times that fall before year 1 or after 9999 once in UTC: as a bound, the earliest
    or the latest time there is (the document calls them valid, so they are not refused)."""
    post_standard(client, inbound_body("m-1"))
    response = client.get(f"/api/v1/messages?{query}", headers=A)
    assert response.status_code == 200
    assert len(response.get_json()["messages"]) == found


@pytest.mark.parametrize(
    "value",
    ["2026-01-31", "2026-01-31T12:00:00", "2026-01-31 12:00:00Z", "20260131T120000Z", " 1767225600", "1" * 15, "1.5"],
)
def test_times_the_document_does_not_describe_are_refused(client, value):
    name = "since"
    response = client.get(f"/api/v1/messages?{name}={quote(value)}", headers=A)
    assert error_of(response) == (
        400,
        "invalid_parameter",
        f"{name}: expected an ISO 8601 time such as 2026-01-31T12:00:00Z",
    )


@pytest.mark.parametrize(
    "value", ["2026-01-31T23:59:60Z", "2026-01-31t12:00:00z", "2026-01-31T12:00:00.1234567+01:00", "0", "1767225600000"]
)
def test_every_rfc_3339_time_and_unix_time_is_taken(client, value):
    assert client.get(f"/api/v1/messages?until={quote(value)}", headers=A).status_code == 200
