"""What the intake's write turn runs per webhook: statements compiled once and run on the driver's cursor
(database/prepared.py), none compiled per webhook and none through `Connection.execute`.

A statement built per request (an update with the request's values, say) costs SQLAlchemy a construct,
a cache key and an execution context at every run (0.18 ms for a status report's message update, against
0.03 on the cursor), or a compilation whenever its cache key cannot cover it: that update cost more than
everything else the report did in the write turn, which on SQLite every other writer waits for. Only
what is rare may take `Connection.execute`: an inbound message's content filling in a message known from
its reports (its feed event's snapshot reads the whole row and its history)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.sql import compiler

from tests.support.standard import inbound_body, post_standard, status_body


def _report_with_addresses(provider_message_id: str, status: str) -> bytes:
    data = {"providerMessageId": provider_message_id, "status": status, "from": "+15550001111", "to": ["+15557654321"]}
    return json.dumps({"type": "message.status", "data": data}).encode()


def _sent_message(provider_message_id: str) -> bytes:
    data = {"providerMessageId": provider_message_id, "from": "+15550001111", "to": ["+15557654321"], "text": "hi"}
    return json.dumps({"type": "message.sent", "data": data}).encode()


def _history(prefix: str) -> Iterator[bytes]:
    """Every way the intake stores a webhook: new messages, a first report (its message's placeholder), a
    report that moves an existing message's status on and fills in its addresses, one that does not move
    it on, a provider's retry, the message's own content after its reports, a webhook of two events."""
    yield inbound_body(f"{prefix}-in")
    yield status_body(f"{prefix}-out", "sent")
    yield _report_with_addresses(f"{prefix}-out", "delivered")
    yield status_body(f"{prefix}-out", "sent", provider_status="late")
    yield status_body(f"{prefix}-out", "sent")  # the same report again
    yield _sent_message(f"{prefix}-out")
    yield status_body(f"{prefix}-in", "read")
    yield inbound_body(f"{prefix}-in")  # a retry of the message


@pytest.fixture
def compiles(monkeypatch) -> list[str]:
    """The SQL of every statement SQLAlchemy compiles from now on in this thread (the test client's
    requests, and their group commit): not the service's background threads'."""
    compiled: list[str] = []
    original = compiler.SQLCompiler.__init__
    test_thread = threading.get_ident()

    def counting(self, *args, **kwargs):
        original(self, *args, **kwargs)
        if threading.get_ident() == test_thread:
            compiled.append(self.string)

    monkeypatch.setattr(compiler.SQLCompiler, "__init__", counting)
    return compiled


@pytest.fixture
def executes(monkeypatch) -> list[str]:
    """The statements this thread (the test client's requests, and their group commit) runs through
    `Connection.execute` from now on: not the service's background threads'."""
    executed: list[str] = []
    original = sa.Connection.execute
    test_thread = threading.get_ident()

    def counting(self, statement, *args, **kwargs):
        if threading.get_ident() == test_thread:
            executed.append(str(statement))
        return original(self, statement, *args, **kwargs)

    monkeypatch.setattr(sa.Connection, "execute", counting)
    return executed


def test_a_webhook_seen_before_in_kind_compiles_nothing(client, compiles):
    for body in _history("warm"):  # the first of each kind may compile (unless an earlier test did)
        assert post_standard(client, body).status_code == 200
    compiles.clear()

    for prefix in ("a", "b"):
        for body in _history(prefix):
            assert post_standard(client, body).status_code == 200
    assert compiles == []
    str(sa.select(sa.literal_column("1")))  # the counting sees a compilation (or this test counts nothing)
    assert compiles == ["SELECT 1"]


def test_webhooks_run_their_statements_on_the_drivers_cursor(client, runtime, executes):
    for body in _history("a"):
        assert post_standard(client, body).status_code == 200
    assert executes == []
    with runtime.db.reading() as session:  # the counting sees what runs (or this test counts nothing)
        session.connection().execute(sa.text("SELECT 1"))
    assert executes == ["SELECT 1"]
