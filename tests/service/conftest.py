"""Fixtures of the tests that run the service as processes: gunicorn as the Procfile starts it, and a
PostgreSQL cluster of the test's own (for tests that freeze the server)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.fixtures.services import free_port
from tests.service.gunicorn import Served, serve, stop
from tests.service.private_postgres import PrivateCluster, start_private_cluster


@pytest.fixture
def gunicorn(tmp_path) -> Iterator[Callable[[str], Served]]:
    """`gunicorn(config)` serves the app with this service configuration (TOML; the port is added) on a
    free port; everything started is stopped at the end of the test."""
    started: list[Served] = []

    def start(config: str) -> Served:
        port = free_port()
        path = tmp_path / f"service-{len(started)}.toml"
        path.write_text(f"port = {port}\n{config}")
        served = serve(path, port)
        started.append(served)
        return served

    yield start
    for served in started:
        stop(served)


@pytest.fixture
def private_postgres() -> Iterator[PrivateCluster]:
    cluster = start_private_cluster()
    yield cluster
    cluster.stop()
