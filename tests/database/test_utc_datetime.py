"""UTCDateTime binds in one step what `process_bind_param` and the dialect's own processor did in two
(tables.py says why): the values sent to the database must be exactly the two-step chain's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy.dialects import postgresql, sqlite

from webhook_service.database.tables import UTCDateTime

DIALECTS = {"sqlite": sqlite.dialect(), "postgresql": postgresql.psycopg.dialect()}
TIMES = [
    datetime(2026, 12, 5, 22, 28, 38, 648154, tzinfo=UTC),
    datetime(2026, 12, 5, 22, 28, 38, tzinfo=UTC),  # no microseconds: still six digits on SQLite
    datetime(2026, 12, 6, 3, 58, 38, 1, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    datetime(1, 1, 1, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2026, 3, 29, 1, 30, tzinfo=timezone(timedelta(hours=-11))),
]


def _two_steps(dialect):
    column_type = UTCDateTime()
    impl = column_type.impl_instance.dialect_impl(dialect).bind_processor(dialect)

    def bind(value):
        value = column_type.process_bind_param(value, dialect)
        return impl(value) if impl is not None and value is not None else value

    return bind


@pytest.mark.parametrize("name", DIALECTS)
@pytest.mark.parametrize("value", [*TIMES, None], ids=str)
def test_the_one_step_binds_what_the_two_steps_did(name, value):
    dialect = DIALECTS[name]
    one_step = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    assert one_step(value) == _two_steps(dialect)(value)
    if value is not None and name == "postgresql":
        assert one_step(value).tzinfo is UTC


@pytest.mark.parametrize("name", DIALECTS)
def test_a_naive_time_is_refused(name):
    dialect = DIALECTS[name]
    with pytest.raises(ValueError, match="naive"):
        UTCDateTime().dialect_impl(dialect).bind_processor(dialect)(datetime(2026, 12, 5, 12, 0))
