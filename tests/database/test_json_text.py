"""JSON text for the database (database/json_text.py): orjson where it can, the standard library where
orjson refuses a value, so that every value stored before is stored still, on both databases."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from webhook_service.database import feed
from webhook_service.database.json_text import dumps, dumps_utf8
from webhook_service.database.tables import EVENTS


def test_the_text_reads_back_as_the_value():
    value = {"text": 'Grüße 🚀 "quoted" \\ \n', "list": [1, 2.5, None, True], "nested": {"a": []}}
    assert json.loads(dumps(value)) == value
    assert dumps({"a": 1}) == '{"a":1}'


def test_what_orjson_refuses_falls_back_to_the_standard_library():
    huge = {"n": 2**70, "m": -(2**80)}
    assert json.loads(dumps(huge)) == huge
    # As SQLAlchemy wrote it before: escaped, so that SQLite still keeps it (its text must be UTF-8).
    assert dumps({"s": "\ud800"}) == json.dumps({"s": "\ud800"}) == '{"s": "\\ud800"}'


def test_keys_that_are_not_strings_become_strings_as_in_the_standard_library():
    assert json.loads(dumps({1: "a", None: "b", 2.5: "c"})) == json.loads(json.dumps({1: "a", None: "b", 2.5: "c"}))


def test_a_float_that_is_no_number_is_null_not_invalid_json():
    assert json.loads(dumps({"x": math.nan, "y": math.inf})) == {"x": None, "y": None}


def test_default_converts_what_json_has_no_form_for():
    moment = datetime(2026, 12, 6, 5, 0, 0, 123456, tzinfo=UTC)
    assert json.loads(dumps({"at": moment, "b": b"\x00\xff"}, default=lambda v: v.hex())) == {
        "at": "2026-12-06T05:00:00.123456+00:00",
        "b": "00ff",
    }
    # The fallback takes the same default.
    assert json.loads(dumps({"big": 2**70, "b": b"\x01"}, default=lambda v: v.hex())) == {"big": 2**70, "b": "01"}


@pytest.mark.parametrize(
    "value",
    [{"text": "benchmark 🚀 Grüße", 1: None}, {"big": 2**70, "emoji": "📦"}, {"s": "a\ud800b"}],
    ids=["orjson", "fallback", "lone surrogate"],
)
def test_the_utf8_form_is_the_text_encoded(value):
    """What the intake sends PostgreSQL as it is (intake/postgres_batch.py): the same JSON as `dumps`, in
    UTF-8, by orjson and by the fallback (whose escapes keep a lone surrogate encodable)."""
    encoded = dumps_utf8(value)
    assert isinstance(encoded, bytes)
    assert encoded == dumps(value).encode("utf-8")


def _store_as_feed_data(runtime, *values: dict) -> None:
    """Each value as the JSON data of a feed event (a JSON column), through the engine."""
    rows = [
        {
            "tenant_id": "t",
            "type": feed.MESSAGE_STATUS,
            "message_id": None,
            "attachment_id": None,
            "created_at": datetime.now(UTC),
            "data": value,
        }
        for value in values
    ]
    with runtime.db.writing() as connection:
        feed.append(connection, rows)


def test_the_engines_store_json_columns_with_it(runtime):
    """Through the engine (SQLite and PostgreSQL): a value orjson writes and one it refuses both come
    back as they went in, and NaN (which PostgreSQL refuses as the standard library writes it) as null."""
    data = {"plain": "é", "big": 2**70, "list": [1, 2.5]}
    _store_as_feed_data(runtime, data, {"nan": math.nan})
    with runtime.db.reading() as session:
        assert list(session.execute(sa.select(EVENTS.c.data).order_by(EVENTS.c.id)).scalars()) == [data, {"nan": None}]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_keeps_a_value_orjson_refuses_for_its_unpaired_surrogate(runtime):
    data = {"s": "a\ud800b"}
    _store_as_feed_data(runtime, data)
    with runtime.db.reading() as session:
        assert session.execute(sa.select(EVENTS.c.data)).scalar_one() == data
