"""bench/intake.py --flush-delay-ms: the library it loads into the servers makes a durable commit wait, and
leaves what the flush returns as it was. (The benchmark's slow-disk numbers mean nothing if it did not.)"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

from bench.intake import slow_flush_environment
from tests.fixtures.services import service_unavailable

# A process that commits to SQLite as the service does (WAL, synchronous=FULL: a flush per commit), then
# flushes a descriptor that cannot be flushed.
COMMITS = """
import os, sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("PRAGMA journal_mode=WAL")
connection.execute("PRAGMA synchronous=FULL")
connection.execute("CREATE TABLE t (x)")
started = time.monotonic()
for number in range(10):
    connection.execute("INSERT INTO t VALUES (?)", (number,))
read_end, _ = os.pipe()
try:
    os.fsync(read_end)
except OSError as error:
    print(time.monotonic() - started, error.errno)
"""


def committing(database: str, environment: dict[str, str]) -> tuple[float, str]:
    """Seconds the child's ten commits and failed flush took (timed inside it: a loaded machine's
    process start-up does not count), and the flush's errno."""
    finished = subprocess.run(
        [sys.executable, "-c", COMMITS, database],
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    seconds, errno = finished.stdout.split()
    return float(seconds), errno


def test_every_flush_waits_the_delay_and_keeps_its_error(tmp_path):
    with contextlib.ExitStack() as cleanup:
        try:
            environment = slow_flush_environment(30, cleanup)
        except SystemExit as missing:  # no C compiler: skipped on a laptop, a failure under CI=true
            service_unavailable("a C compiler", str(missing))
        slow, slow_error = committing(str(tmp_path / "slow.db"), environment)
    _, plain_error = committing(str(tmp_path / "plain.db"), {})

    # Ten commits, each with at least one flush of 30 ms more, and the failed flush's own 30 ms. (Nothing
    # bounds it from above on a busy machine, nor the plain run's time from below.)
    assert slow >= 11 * 0.030
    # fsync on a pipe fails with EINVAL; the library's sleep does not change what the caller reads.
    assert slow_error == plain_error == "22"
