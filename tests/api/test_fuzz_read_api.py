"""Fuzzing the read API's parameters through the app (issue 16): query strings of known and unknown
names, repeated or not, with values that are hostile text, extreme times, digits of other scripts and
bytes that are not UTF-8; and path variables made of the same. What must hold: never a 5xx, and every
refusal in the documented shape {"error": {"code", "message"}}."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.support.hostile_inputs import FUZZ_SETTINGS, hostile_text, percent_encoded, times
from tests.support.media_uploads import A, error_of
from tests.support.standard import inbound_body, status_body

EXAMPLES = 300

# Each list endpoint's parameters, and values that pass their checks (so that the others are reached).
QUERIES = {
    "/api/v1/messages": {
        "limit": ("1", "200"),
        "cursor": ("1", "999999999999999999"),
        "direction": ("inbound", "outbound"),
        "status": ("delivered", "received"),
        "provider": ("standard",),
        "connection": ("open",),
        "providerMessageId": ("m-1",),
        "from": ("+15550001111", "(555) 000-1111"),
        "to": ("+15551234567",),
        "since": ("0001-01-01T00:00:00Z", "2026-01-01T00:00:00Z"),
        "until": ("9999-12-31T23:59:59Z", "1767225600"),
    },
    "/api/v1/events": {
        "after": ("0", "999999999999999999"),
        "limit": ("1", "1000"),
        "type": ("message.received", "message.status,message.received", ","),
    },
}
NUMBERS_AS_TEXT = ("0", "-1", "1e3", "1" * 19, "1" * 5000, "\u0661", "\u00b2", "\uff11", "0x10", " 5", "+5", "5.0")


@st.composite
def queries(draw: st.DrawFn) -> str:
    endpoint = draw(st.sampled_from(sorted(QUERIES)))
    known = QUERIES[endpoint]
    value = st.one_of(hostile_text, times, st.sampled_from(NUMBERS_AS_TEXT))
    pairs = draw(
        st.lists(
            st.one_of(
                st.sampled_from(sorted(known)).flatmap(
                    lambda name: st.tuples(st.just(name), st.sampled_from(known[name]))
                ),
                st.tuples(st.sampled_from(sorted(known)), value),
                st.tuples(hostile_text, value),
            ),
            max_size=5,
        )
    )
    query = "&".join(f"{percent_encoded(name)}={percent_encoded(item)}" for name, item in pairs)
    return f"{endpoint}?{query}" if query else endpoint


@st.composite
def paths(draw: st.DrawFn) -> str:
    identifier = percent_encoded(draw(st.one_of(hostile_text, st.just("m-1"))))
    provider = percent_encoded(draw(st.one_of(st.just("standard"), hostile_text)))
    return draw(
        st.sampled_from((f"/api/v1/messages/{identifier}", f"/api/v1/providers/{provider}/messages/{identifier}"))
    )


def _seed(client) -> None:
    """Messages whose times are at the ends of the years a datetime holds, so that answers show them."""
    for body in (
        inbound_body("m-1"),
        status_body("m-1", "delivered", occurred_at="0001-01-01T00:00:00Z"),
        status_body("m-2", "sent", occurred_at="9999-12-31T23:59:59Z"),
    ):
        assert client.post("/webhooks/standard/open", data=body, content_type="application/json").status_code == 200


def _check(client, url: str) -> None:
    response = client.get(url, headers=A)
    assert response.status_code < 500, response.get_data(as_text=True)
    if response.status_code >= 400:
        error_of(response)  # the documented shape, or an assertion error
    elif response.status_code < 300:
        assert response.get_json() is not None
    # 3xx: werkzeug's redirect of a path with "//" in it (an encoded "/" in an id) to its merged form.


@pytest.mark.slow
def test_no_query_is_a_server_error(client):
    _seed(client)

    @settings(FUZZ_SETTINGS, max_examples=EXAMPLES)
    @given(url=queries())
    # Found by fault testing (issue 16): offsets that move a time past year 9999 or before year 1.
    @example(url="/api/v1/messages?since=9999-12-31T23%3A59%3A59-05%3A00")
    @example(url="/api/v1/messages?until=0001-01-01T00%3A00%3A00%2B05%3A00")
    def check(url: str) -> None:
        _check(client, url)

    check()


@pytest.mark.slow
def test_no_path_is_a_server_error(client):
    _seed(client)

    @settings(FUZZ_SETTINGS, max_examples=EXAMPLES // 3)
    @given(url=paths())
    def check(url: str) -> None:
        _check(client, url)

    check()
