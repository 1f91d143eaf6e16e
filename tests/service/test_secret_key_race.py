"""Every web worker of a new data directory makes the development secret key at the same moment; each
must end up with the same complete key (one of them once read the file between another's create and
write, found it empty and refused to start: "signing_key must be at least 16 random bytes")."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from webhook_service.runtime import kept_secret_key

PROCESSES = 12
ROUNDS = 15


def _race(path: str, barrier, results) -> None:
    barrier.wait()
    results.put(kept_secret_key(Path(path)))


@pytest.mark.slow
def test_processes_making_the_key_at_once_all_get_the_same_complete_key(tmp_path):
    context = multiprocessing.get_context("fork")
    for round_number in range(ROUNDS):
        path = tmp_path / str(round_number) / "secret_key"
        barrier, results = context.Barrier(PROCESSES), context.Queue()
        processes = [context.Process(target=_race, args=(str(path), barrier, results)) for _ in range(PROCESSES)]
        for process in processes:
            process.start()
        keys = {results.get(timeout=30) for _ in processes}
        for process in processes:
            process.join(timeout=30)
        assert len(keys) == 1 and len(keys.pop()) >= 32
        assert sorted(item.name for item in path.parent.iterdir()) == ["secret_key"]  # no drafts left behind
