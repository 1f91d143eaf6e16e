"""The intake tests' own fixture: `down`, the service while its database cannot be reached (see
tests/support/spool.py)."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from tests.support.spool import runtime_like, unreachable_database_url
from webhook_service.app import create_app


@pytest.fixture
def down(settings) -> Iterator[SimpleNamespace]:
    """The service while its database refuses every connection."""
    runtime = runtime_like(settings, database_url=unreachable_database_url())
    yield SimpleNamespace(runtime=runtime, client=create_app(runtime=runtime).test_client())
    runtime.close()
