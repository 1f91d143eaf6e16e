"""The spool on a disk that misbehaves: full, read-only, out of inodes, a directory that is a file, lock
files removed from outside; and what the spool leaves on the disk: the space of drained files given back,
new directories synced.

A full disk here is a real tmpfs of a few pages mounted on the spool directory (tests/support/
small_filesystem.py): mounting needs root, which CI has; elsewhere those tests skip, and under CI=true
they fail rather than skip. `down` spools (its database cannot be reached), `runtime` drains: see
tests/support/spool.py.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.fixtures.services import service_unavailable
from tests.providers.security_suite import count
from tests.support.scratch_space import fill_scratch_space
from tests.support.small_filesystem import fill, remount, small_filesystem, use_up_inodes
from tests.support.spool import drain, file_key, removed_files_held_open, spool_files, spooled_request
from tests.support.standard import inbound_body, post_standard
from webhook_service.database.tables import Message, RawRequest
from webhook_service.intake.spool import RequestSpool
from webhook_service.intake.spool_drainer import SpoolDrainer
from webhook_service.intake.spool_format import RECORD_MAGIC, frame

# A volume of the test's own: room for a few dozen webhooks of ~3 KB.
VOLUME_BYTES = 256 * 1024


@contextlib.contextmanager
def own_volume(directory: Path, size_bytes: int = VOLUME_BYTES, *, inodes: int | None = None) -> Iterator[None]:
    with small_filesystem(directory, size_bytes, inodes=inodes) as mounted:
        if not mounted:
            service_unavailable("a small volume of the test's own (a tmpfs)", "mounting one needs root")
        yield


def _post(client, message_id: str, text: str = "hello"):
    return post_standard(client, inbound_body(message_id, text=text))


def _acknowledged_until_full(client, prefix: str) -> list[str]:
    """Webhooks of ~3 KB posted until one is refused (the disk is full); the ones acknowledged."""
    acknowledged = []
    for n in range(1000):
        message_id = f"{prefix}-{n}"
        answer = _post(client, message_id, text="x" * 3000)
        if answer.status_code != 200:
            assert answer.status_code == 503
            return acknowledged
        acknowledged.append(message_id)
    raise AssertionError("the volume never filled")


def _stored_message_ids(runtime) -> list[str]:
    with runtime.db.reading() as session:
        return list(session.scalars(sa.select(Message.provider_message_id).order_by(Message.seq)))


def _ready(client) -> tuple[int, dict]:
    answer = client.get("/readyz")
    return answer.status_code, answer.get_json()


class TestFullDisk:
    def test_a_spool_begun_on_a_full_disk_drains_once_the_database_is_back(self, down, runtime):
        """The outage begins while something else has filled the volume (503, nothing kept); then the
        spool fills what room there is, and something else takes the rest. Every request acknowledged is
        stored once, and the spool's files are removed, which gives the volume its space back."""
        spool_dir = runtime.settings.spool_dir
        with own_volume(spool_dir):
            filler = fill(spool_dir)
            assert _post(down.client, "m-first").status_code == 503
            filler.unlink()
            acknowledged = _acknowledged_until_full(down.client, "m-full")
            assert len(acknowledged) > 16  # more than the drainer stores between noting its progress
            fill(spool_dir)

            for _ in range(3):  # the drainer's passes, a second apart
                drain(runtime)
            assert _stored_message_ids(runtime) == acknowledged
            assert count(runtime, RawRequest) == len(acknowledged)
            assert spool_files(runtime) == []

    def test_a_progress_file_left_short_does_not_stop_the_drain_on_a_full_disk(self, down, runtime, caplog):
        """A progress file an earlier version left empty (made, then ENOSPC or a crash before its bytes),
        and a full disk: the drain cannot note its progress, goes on from what it knows, stores each
        request once, and removes the file it has stored to its end."""
        caplog.set_level(logging.INFO, logger="webhook_service")
        spool_dir = runtime.settings.spool_dir
        with own_volume(spool_dir):
            acknowledged = _acknowledged_until_full(down.client, "m-short")
            progress = spool_dir / "progress"
            progress.unlink()
            progress.touch()
            fill(spool_dir)

            report = drain(runtime)
            assert report.finished and report.outcomes == {"accepted": len(acknowledged)}
            assert _stored_message_ids(runtime) == acknowledged
            assert spool_files(runtime) == []
            assert [r for r in caplog.records if r.getMessage() == "spool_progress_unwritable"]

    def test_a_record_this_version_cannot_read_waits_for_room_to_be_kept(self, down, runtime, caplog):
        """A record that checks out but holds no request this version reads (another version wrote it, in
        a rolling deploy) was acknowledged: on a full disk, where no copy of it can be kept, the drain
        waits at it, and passes it only once damaged/ holds it."""
        caplog.set_level(logging.INFO, logger="webhook_service")
        spool_dir = runtime.settings.spool_dir
        with own_volume(spool_dir, 128 * 1024):
            assert _post(down.client, "m-before").status_code == 200
            unreadable = _record_of_another_version(file_key(spool_files(runtime)[-1]))
            with spool_files(runtime)[-1].open("ab") as spool_file:
                spool_file.write(unreadable)
            assert _post(down.client, "m-after").status_code == 200
            filler = fill(spool_dir)

            assert drain(runtime).outcomes == {"accepted": 1}
            assert _stored_message_ids(runtime) == ["m-before"]
            assert spool_files(runtime), "the record was passed without a copy"
            [waiting] = [r.fields for r in caplog.records if r.getMessage() == "spool_record_unreadable"]
            assert waiting["drain_waits"] is True and waiting["kept_as"] is None

            filler.unlink()
            report = drain(runtime)
            assert report.outcomes == {"unreadable": 1, "accepted": 1} and report.finished
            assert _stored_message_ids(runtime) == ["m-before", "m-after"]
            [kept] = (spool_dir / "damaged").iterdir()
            assert kept.read_bytes() == unreadable


def _record_of_another_version(key: bytes) -> bytes:
    """A record framed as this version frames them (its MAC checks out under the file's key), holding
    metadata it does not know."""
    metadata = b'{"v": 2, "provider": "standard", "connection": "main", "request": "req-v2"}'
    return frame(len(metadata).to_bytes(4, "big") + metadata + b'{"id": "m-v2"}', key)


class TestReadiness:
    """/readyz keeps the host in a load balancer's rotation while the database alone is down only when
    the spool takes the webhooks: not when its directory cannot be written."""

    def _refused_and_out_of_rotation(self, down) -> None:
        assert _post(down.client, "m-refused").status_code == 503
        status, body = _ready(down.client)
        assert status == 503, body
        assert body["status"] == "unavailable" and body["spool"]["accepting"] is False

    def _back_in_rotation(self, down) -> None:
        deadline = time.monotonic() + 5
        while (ready := _ready(down.client))[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.2)  # /readyz tries a write of its own at most once a second
        assert ready[0] == 200 and ready[1]["status"] == "degraded", ready
        assert _post(down.client, "m-taken").status_code == 200

    def test_a_file_where_the_spool_directory_should_be(self, down, runtime):
        spool_dir = runtime.settings.spool_dir
        spool_dir.parent.mkdir(parents=True, exist_ok=True)
        spool_dir.write_bytes(b"not a directory")
        self._refused_and_out_of_rotation(down)
        spool_dir.unlink()
        self._back_in_rotation(down)

    def test_a_read_only_volume(self, down, runtime):
        spool_dir = runtime.settings.spool_dir
        with own_volume(spool_dir):
            remount(spool_dir, read_only=True)  # as the kernel does after an I/O error (errors=remount-ro)
            self._refused_and_out_of_rotation(down)
            remount(spool_dir, read_only=False)
            self._back_in_rotation(down)

    def test_a_volume_without_free_inodes(self, down, runtime):
        spool_dir = runtime.settings.spool_dir
        with own_volume(spool_dir, inodes=64):
            files = use_up_inodes(spool_dir)
            self._refused_and_out_of_rotation(down)
            for path in files[:8]:
                path.unlink()
            self._back_in_rotation(down)

    def test_writes_that_fail_although_the_volume_looks_fine(self, down, runtime, monkeypatch):
        """An error statvfs does not show (EIO, a quota): the last append failed, and /readyz says so
        until a write of its own works again."""
        spool_dir = runtime.settings.spool_dir
        fill_scratch_space(monkeypatch, spool_dir)
        self._refused_and_out_of_rotation(down)
        monkeypatch.undo()
        self._back_in_rotation(down)


class TestFiles:
    def test_a_drained_file_is_let_go_by_every_process_that_spooled_to_it(self, down, runtime):
        """The drainer (here `runtime`) removes the file it stored; `down`, which appended to it, lets go
        of its descriptor within a look of its own drainer thread, without waiting for another request:
        until then, the volume would not get the file's space back."""
        spool_dir = runtime.settings.spool_dir
        for n in range(3):
            assert _post(down.client, f"m-held-{n}").status_code == 200
        assert drain(runtime).finished and spool_files(runtime) == []
        assert removed_files_held_open(spool_dir)  # down's, until its drainer thread looks

        down.runtime.start_spool_drainer()
        deadline = time.monotonic() + 5
        while removed_files_held_open(spool_dir) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert removed_files_held_open(spool_dir) == []

    @pytest.mark.parametrize(("lock", "name"), [("_append_lock", "append.lock"), ("_drain_lock", "drain.lock")])
    def test_a_lock_file_removed_from_outside_is_taken_on_the_new_file(self, tmp_path, lock, name):
        """A tmp cleaner or an operator removes a lock file: a process that had it open must not go on
        locking the removed file while a process that opens the path locks a new one."""
        directory = tmp_path / "spool"
        directory.mkdir()
        earlier, later = (RequestSpool(directory, max_bytes=1 << 20, max_body_bytes=1 << 20) for _ in range(2))
        with getattr(earlier, lock).held():
            pass  # its descriptor stays open on the lock file
        (directory / name).unlink()
        with getattr(earlier, lock).held() as held:
            assert held
            with getattr(later, lock).held(wait=False) as also_held:
                assert not also_held, "two processes hold the lock at once"

    def test_every_directory_made_for_the_spool_is_synced(self, runtime, tmp_path, monkeypatch):
        """The first request spooled into a data directory that does not exist yet makes each level; each
        one's entry in its parent is synced before the request is acknowledged (else a power loss can take
        the directory, with every request in it). So is damaged/'s, before the drain passes what it keeps."""
        spool_dir = tmp_path / "new" / "data" / "spool"
        spool = RequestSpool(spool_dir, max_bytes=1 << 20, max_body_bytes=1 << 20)
        synced = _directories_synced(monkeypatch)
        spool.append(spooled_request("m-synced"))  # acknowledged once this returns
        for made in (tmp_path / "new", spool_dir.parent, spool_dir):
            assert str(made.parent) in synced, f"{made}'s entry was never synced"

        with spool.files()[0].open("ab") as spool_file:
            spool_file.write(RECORD_MAGIC + b"\0\0\0\x10 torn")  # a record a crash cut off
        synced.clear()
        report = SpoolDrainer(spool, runtime.intake).drain()
        assert report is not None and report.set_aside == 1
        damaged = str(spool_dir / "damaged")
        assert str(spool_dir) in synced[: synced.index(damaged)], "damaged/ was made but not synced"
        assert _stored_message_ids(runtime) == ["m-synced"]


def _directories_synced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """From now on, the directories fsynced, in order (the real fsync still runs)."""
    synced: list[str] = []
    real_fsync = os.fsync

    def tracing_fsync(descriptor: int) -> None:
        if stat.S_ISDIR(os.fstat(descriptor).st_mode):
            synced.append(os.readlink(f"/proc/self/fd/{descriptor}"))
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", tracing_fsync)
    return synced
