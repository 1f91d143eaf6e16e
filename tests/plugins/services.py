"""Reaching the servers some tests need (PostgreSQL, Redis, Azurite, moto's S3 server).

On a developer's laptop a missing server skips its tests with the reason; under CI=true nothing may
skip for that reason, so the same situation fails the test instead.
"""
from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

import pytest

IN_CI = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def service_unavailable(service: str, reason: str) -> None:
    """Skip (laptop) or fail (CI) the current test because `service` cannot be used."""
    message = f"{service} is not available: {reason}"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: tests may not skip for a missing service)", pytrace=False)
    pytest.skip(message)


def tcp_reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def url_reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url.replace("+psycopg", ""))
    return tcp_reachable(parts.hostname or "127.0.0.1", parts.port or default_port)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def xdist_worker() -> str:
    """"gw0", "gw1"... under pytest-xdist, "main" otherwise: used to give each worker its own resources."""
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture(scope="session")
def redis_url() -> str:
    if not url_reachable(REDIS_URL, 6379):
        service_unavailable("Redis", f"nothing listens at {REDIS_URL} (set TEST_REDIS_URL)")
    return REDIS_URL
