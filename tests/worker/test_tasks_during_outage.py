"""A task that finds the database down (a download's wake-up, a delivery turn, either minute's sweep) is
put off in one warning line, not failed with huey's traceback: the database says what is to be done, and
the sweeps find the work again once it answers."""

from __future__ import annotations

import logging

import pytest

from tests.support.spool import unreachable_database_url


@pytest.fixture
def settings_overrides() -> dict:
    return {"database_url": unreachable_database_url()}


# The database is an unreachable PostgreSQL whichever the fixture's: once.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_every_task_that_finds_the_database_down_is_put_off_in_one_line(runtime, caplog):
    caplog.set_level(logging.DEBUG)
    queue = runtime.queue
    tasks = {
        "download_attachment": queue._download.s("01a252ce-0000-7000-8000-000000000000"),
        "deliver_to_endpoint": queue._deliver.s("01a252ce-0000-7000-8000-000000000001"),
        "sweep_pending_attachments": queue.sweep.s(),
        "sweep_deliveries": queue.delivery_sweep.s(),
    }
    for task in tasks.values():
        queue.huey.execute(task)
    put_off = [record for record in caplog.records if record.getMessage() == "task_put_off"]
    assert sorted(record.fields["task"] for record in put_off) == sorted(tasks)
    assert {record.levelno for record in put_off} == {logging.WARNING}
    # The driver's reason (connection refused), or the outage already known from the task before.
    reasons = {record.fields["reason"] for record in put_off}
    assert all("refused" in reason or "did not answer moments ago" in reason for reason in reasons), reasons
    # Nothing logged its traceback (huey's "Unhandled exception in task"), and nothing above a warning.
    assert [record.getMessage() for record in caplog.records if record.exc_info] == []
    assert [record.getMessage() for record in caplog.records if record.levelno > logging.WARNING] == []
