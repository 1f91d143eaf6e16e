"""Spooling in tests: the service while its database refuses every connection, and the spool's drain.

A test has two runtimes over one data directory (so one spool): `down` (tests/intake/conftest.py), whose
database is a PostgreSQL port nothing listens on, receives the webhooks; the test's `runtime`, on its real
SQLite or PostgreSQL database, drains them, as another process of the same host does once the database is
back.
"""

from __future__ import annotations

import json
import os
import secrets
import zlib
from datetime import UTC, datetime
from pathlib import Path

from tests.fixtures.app import TENANT_A
from tests.fixtures.services import free_port
from tests.support.standard import inbound_body
from webhook_service.config.model import Settings
from webhook_service.intake.message_store import RawRequestRecord
from webhook_service.intake.spool_drainer import DrainReport
from webhook_service.intake.spool_format import FILE_HEADER_BYTES, SpooledRequest, read_header
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


def file_key(path: Path) -> bytes:
    """The key in the header of the spool file at `path` (one this version wrote)."""
    header = read_header(path.read_bytes()[:FILE_HEADER_BYTES])
    assert header is not None and header.key is not None
    return header.key


def v1_record(spooled: SpooledRequest) -> bytes:
    """The request as earlier versions wrote it (format 1: "WSR1", its length, the CRC32 of its payload),
    made here byte by byte, as those versions did, not with this version's code."""
    record = spooled.record
    metadata = json.dumps(
        {
            "provider": spooled.provider,
            "connection": spooled.connection,
            "tenant": spooled.tenant,
            "request_id": record.request_id,
            "method": record.method,
            "url": record.url,
            "headers": record.headers,
            "remote_addr": record.remote_addr,
            "received_at": record.received_at.isoformat(),
            "spooled_at": spooled.spooled_at.isoformat(),
        }
    ).encode()
    payload = len(metadata).to_bytes(4, "big") + metadata + record.body
    return b"WSR1" + len(payload).to_bytes(4, "big") + zlib.crc32(payload).to_bytes(4, "big") + payload


def v1_file(*records: bytes) -> bytes:
    """A spool file as earlier versions wrote it (format 1): its header, then `records`."""
    return b"WHSPOOL1" + secrets.token_bytes(16) + b"".join(records)
