"""Leases (database/leases.py) on SQLite and PostgreSQL: of processes racing for one, exactly one gets it
each term; nobody gets it while it is held; a holder that dies (SIGKILL, nothing released) is taken over
once its term is over. And migration 0003, which makes the table."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta

import sqlalchemy as sa
from alembic import command

from tests.support.migrations import schema_differences
from webhook_service.database.engine import Database, make_engine
from webhook_service.database.leases import Lease
from webhook_service.database.migrate import alembic_config
from webhook_service.database.tables import LEASES

# Longer than eight contenders racing on SQLite take on a loaded machine (a full run once took more than
# 1.5 s, and the lease had expired when the test checked that nobody else could take it).
TERM_SECONDS = 3.0


def test_of_processes_racing_for_a_lease_exactly_one_gets_it_each_term(database_url):
    # Two databases objects: two engines, so two connection pools, as two worker processes have.
    databases = [Database(database_url), Database(database_url)]
    contenders = [Lease(databases[index % 2], "race", TERM_SECONDS) for index in range(8)]
    try:
        # The first race inserts the lease's row; the later ones take it over once its term is over.
        for _term in range(3):
            start = threading.Barrier(len(contenders))
            won: list[bool] = [False] * len(contenders)

            def contend(index: int) -> None:
                start.wait()
                won[index] = contenders[index].take()

            threads = [threading.Thread(target=contend, args=(index,)) for index in range(len(contenders))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=30)
            assert sum(won) == 1, won
            _assert_held_for_its_whole_term(contenders)
            _end_the_term(databases[0], "race")
    finally:
        for database in databases:
            database.dispose()


def _end_the_term(database: Database, name: str) -> None:
    """Move the lease's expiry back by its term, as if its term had run out (the database's clock is the
    one leases read): the next race is one for an expired lease, without the test waiting out a term."""
    held = Lease(database, name, TERM_SECONDS).state()
    assert held is not None
    with database.writing() as connection:
        expired = held.expires_at - timedelta(seconds=TERM_SECONDS)
        connection.execute(sa.update(LEASES).where(LEASES.c.name == name).values(expires_at=expired))


def _assert_held_for_its_whole_term(contenders: list[Lease]) -> None:
    # Nobody takes a held lease. Judged by the database's own times, not by how long the takes took: a
    # loaded machine once spent more than the term between the race and these takes (CI, PostgreSQL), and
    # then a take is right to succeed. A take that succeeds must have run at or after the term's end: the
    # new term starts (its expiry less the term) no earlier than the old one expired.
    for contender in contenders:
        held = contender.state()
        assert held is not None
        if contender.take():
            taken = contender.state()
            assert taken is not None
            assert taken.expires_at - contender.term >= held.expires_at, (held, taken)


def test_a_holder_that_dies_is_taken_over_once_its_term_is_over(database_url):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from webhook_service.database.engine import Database\n"
            "from webhook_service.database.leases import Lease\n"
            f"print(Lease(Database(sys.argv[1]), 'dying', {TERM_SECONDS}).take(), flush=True)\n"
            "time.sleep(600)\n",
            database_url,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    database = Database(database_url)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "True\n"
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        lease = Lease(database, "dying", TERM_SECONDS)
        state = lease.state()
        assert state is not None and state.holder.endswith(f":{holder.pid}")
        while not lease.take():
            assert time.time() < state.expires_at.timestamp() + 5, "never taken over"
            time.sleep(0.05)
        # Taken over, and not before the dead holder's term was over: the new term starts (its expiry less
        # its term, both the database's times) no earlier than the old one ended. Judged by those times,
        # not by whether the first take failed: a loaded machine may take longer than the term to ask.
        taken = lease.state()
        assert taken is not None and taken.holder.endswith(f":{os.getpid()}")
        assert taken.expires_at - lease.term >= state.expires_at, (state, taken)
    finally:
        holder.kill()
        holder.wait()
        database.dispose()


def test_0003_downgrades_upgrades_and_matches_the_models(database_url):
    config = alembic_config(database_url)
    engine = make_engine(database_url)
    try:
        command.downgrade(config, "0002")
        try:
            assert "leases" not in sa.inspect(engine).get_table_names()
        finally:
            command.upgrade(config, "head")
        assert "leases" in sa.inspect(engine).get_table_names()
        with engine.connect() as connection:
            assert schema_differences(connection) == []
    finally:
        engine.dispose()
