"""Spooling in tests: the service while its database refuses every connection, and the spool's drain.

A test has two runtimes over one data directory (so one spool): `down` (tests/intake/conftest.py), whose
database is a PostgreSQL port nothing listens on, receives the webhooks; the test's `runtime`, on its real
SQLite or PostgreSQL database, drains them, as another process of the same host does once the database is
back.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from tests.fixtures.app import TENANT_A
from tests.fixtures.services import free_port
from tests.support.standard import inbound_body
from webhook_service.config.model import Settings
from webhook_service.intake.message_store import RawRequestRecord
from webhook_service.intake.spool_drainer import DrainReport
from webhook_service.intake.spool_format import SpooledRequest
from webhook_service.runtime import Runtime
from webhook_service.settings import load_settings


def runtime_like(settings: Settings, **changes: object) -> Runtime:
    """Another process of the same host: the same data directory (so the same spool), other settings."""
    return Runtime(load_settings(environ={}, overrides={**settings.model_dump(mode="json"), **changes}))


def unreachable_database_url() -> str:
    return f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing"


def spooled_request(message_id: str, *, body: bytes | None = None, request_id: str = "spooled") -> SpooledRequest:
    """A request to standard/main (tenant A) as the intake spools it."""
    return SpooledRequest(
        provider="standard",
        connection="main",
        tenant=TENANT_A,
        record=RawRequestRecord(
            request_id=request_id,
            method="POST",
            url="http://x/webhooks/standard/main",
            headers=[],
            body=inbound_body(message_id) if body is None else body,
            remote_addr=None,
            received_at=datetime.now(UTC),
        ),
        spooled_at=datetime.now(UTC),
    )


def drain(runtime: Runtime) -> DrainReport:
    assert runtime.spool_drainer is not None
    report = runtime.spool_drainer.drain()
    assert report is not None
    return report


def spool_files(runtime: Runtime) -> list[Path]:
    """The spool's files, in the order they are drained."""
    assert runtime.spool is not None
    return runtime.spool.files()


def removed_files_held_open(directory: Path) -> list[str]:
    """The files under `directory` that are removed but that this process still has open: their space
    is not given back to the volume until they are closed."""
    held = []
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except FileNotFoundError:  # the descriptor listing the directory, closed meanwhile
            continue
        if target.startswith(f"{directory}/") and target.endswith(" (deleted)"):
            held.append(target)
    return held
