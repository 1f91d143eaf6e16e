"""The console's limits hold for the whole deployment, not per web process: two apps over one database
(two gunicorn workers, or two hosts) count sign-in attempts per username and per address, and actions
per operator, together: in the database when no Redis is configured, in Redis when it is. `memory://`
still counts per process. While the database does not answer, each process counts in its memory: logged,
never a 500, and the limit still holds."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import event as sa_event

from tests.console.conftest import ADMIN, OPERATORS, VIEWER, csrf_token, post_form, sign_in
from webhook_service.app import create_app
from webhook_service.config.model import ConfigError, ConsoleSettings
from webhook_service.console.access import SignInLimiter
from webhook_service.runtime import Runtime


@pytest.fixture
def second(settings) -> Iterator:
    """A test client of another web process of the same deployment (same settings, same database)."""
    runtime = Runtime(settings)
    try:
        yield create_app(runtime=runtime).test_client()
    finally:
        runtime.close()


def _attempt(client, username: str, password: str = "guess", address: str = "127.0.0.1") -> int:
    environ = {"REMOTE_ADDR": address}
    token = csrf_token(client.get("/console/login", environ_base=environ).get_data(as_text=True))
    response = client.post(
        "/console/login", data={"username": username, "password": password, "csrf_token": token}, environ_base=environ
    )
    return response.status_code


def _alternating(first, second, count: int, username: str, **kwargs) -> list[int]:
    return [_attempt((first, second)[number % 2], username, **kwargs) for number in range(count)]


class TestInTheDatabase:
    """No Redis and no `console.rate_limit_storage_url`: the default."""

    def test_attempts_per_username_are_counted_by_every_process_together(self, client, second):
        # 5 a minute per username: 3 in one process and 3 in the other make 6.
        assert _alternating(client, second, 6, ADMIN[0]) == [401] * 5 + [429]
        # Locked in both, the right password too; another operator is not.
        assert _attempt(client, *ADMIN) == _attempt(second, *ADMIN) == 429
        assert _attempt(second, *VIEWER) == 303


class TestAddressInTheDatabase:
    @pytest.fixture
    def settings_overrides(self):
        return {"operators": OPERATORS, "console": {"login_limit_per_address": "5/minute"}}

    def test_attempts_per_address_are_counted_by_every_process_together(self, client, second):
        # Another username each time (each under its own limit): 3 in one process and 3 in the other.
        assert [_attempt((client, second)[n % 2], f"user-{n}") for n in range(6)] == [401] * 5 + [429]
        assert _attempt(second, *ADMIN) == 429
        assert _attempt(second, *ADMIN, address="10.9.8.7") == 303  # another address gets in

    def test_a_flood_past_the_limit_costs_the_database_nothing(self, client, runtime):
        """Refused by this process's own count first: on SQLite each hit's write would wait for the lock
        the webhooks wait for."""
        transactions: list[int] = []
        sa_event.listen(runtime.db.engine, "begin", lambda *_: transactions.append(1))
        assert [_attempt(client, f"user-{n}") for n in range(5)] == [401] * 5
        written = len(transactions)
        assert [_attempt(client, f"other-{n}") for n in range(20)] == [429] * 20
        assert len(transactions) == written, "the refused flood started no database transaction"


class TestActionsInTheDatabase:
    @pytest.fixture
    def settings_overrides(self):
        return {"operators": OPERATORS, "console": {"action_limit_per_operator": "5/minute"}}

    def test_actions_per_operator_are_counted_by_every_process_together(self, client, second):
        assert sign_in(client, ADMIN).status_code == sign_in(second, ADMIN).status_code == 303
        retry = "/console/attachments/retry-reason"
        statuses = [post_form((client, second)[n % 2], retry, {"reason": "http_404"}).status_code for n in range(6)]
        assert statuses == [303] * 5 + [429]
        assert post_form(client, retry, {"reason": "http_404"}).status_code == 429


class TestInMemory:
    """`memory://` set explicitly: each process counts its own, as it says."""

    @pytest.fixture
    def settings_overrides(self):
        return {"operators": OPERATORS, "console": {"rate_limit_storage_url": "memory://"}}

    def test_each_process_counts_its_own(self, client, second):
        assert _alternating(client, second, 10, ADMIN[0]) == [401] * 10
        assert _attempt(client, ADMIN[0]) == _attempt(second, ADMIN[0]) == 429


class TestInRedis:
    @pytest.fixture
    def settings_overrides(self, redis_url):
        return {"operators": OPERATORS, "console": {"rate_limit_storage_url": redis_url}}

    def test_attempts_are_counted_by_every_process_together(self, client, second):
        # Redis outlives the test and may be shared with other runs: a username and an address of its own.
        username, address = f"user-{uuid.uuid4().hex}", f"10.{uuid.uuid4().int % 250}.0.1"
        assert _alternating(client, second, 6, username, address=address) == [401] * 5 + [429]


class TestDatabaseOutage:
    def test_each_process_counts_in_memory_meanwhile_and_nothing_is_a_500(self, settings, tmp_path, caplog):
        if settings.database_url.startswith("sqlite"):
            (tmp_path / "not-a-database").mkdir()  # SQLite cannot open it
            down_url = f"sqlite:///{tmp_path / 'not-a-database'}"
        else:
            down_url = "postgresql+psycopg://postgres@127.0.0.1:9/nothing"
        runtime = Runtime(settings.model_copy(update={"database_url": down_url}))
        try:
            down = create_app(runtime=runtime).test_client()
            with caplog.at_level(logging.WARNING, logger="webhook_service.console"):
                statuses = [_attempt(down, ADMIN[0]) for _ in range(6)]
            # The limit holds (in this process) and the wrong passwords are told apart from it.
            assert statuses == [401] * 5 + [429]
            unavailable = [r for r in caplog.records if r.getMessage() == "sign_in_limit_storage_unavailable"]
            assert unavailable
            # Nobody is locked out by the outage: the right password passes the limit; the sign-in itself
            # then needs the audit log, so it is the console's 503 page.
            assert _attempt(down, *VIEWER) == 503
        finally:
            runtime.close()


@pytest.mark.parametrize(
    ("console", "redis_url", "problem"),
    [
        (
            {"rate_limit_storage_url": "memcached://127.0.0.1:11211"},
            None,
            "console.rate_limit_storage_url: 'pymemcache' prerequisite not available",
        ),
        ({}, "redis://:s3cret@127.0.0.1:1/0?socket_timeout=soon", "redis_url: Invalid value for 'socket_timeout'"),
        (
            {"rate_limit_storage_url": "redis+tls://:s3cret@127.0.0.1"},
            None,
            "console.rate_limit_storage_url: no rate limit storage is called 'redis+tls://'",
        ),
        (
            {"rate_limit_storage_url": "redis://:s3cret@127.0.0.1:63790x"},
            None,
            "console.rate_limit_storage_url: Port could not be cast to integer value as '63790x'",
        ),
    ],
    ids=["library not installed", "option it cannot read", "no such storage", "port"],
)
def test_a_store_the_limits_cannot_be_counted_in_is_a_configuration_error(console, redis_url, problem):
    """Found only as the web app is built: each gunicorn worker printed its traceback. A configuration
    error instead, which the web says in one line (wsgi.py), naming the setting and not the URL."""
    settings = ConsoleSettings(**console)
    with pytest.raises(ConfigError) as error:
        SignInLimiter(settings, redis_url, db=None)  # type: ignore[arg-type]  # not used for such a store
    assert str(error.value).startswith(problem)
    assert "s3cret" not in str(error.value)
