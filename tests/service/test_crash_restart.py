"""A gunicorn master killed outright (SIGKILL, the OOM killer) cannot stop its workers. They must notice
and stop at once, so that a restarted server can bind the port: before, they lived on for 1 to 20 s and
more (gunicorn's own check notices within a second, then stops gracefully: it waits for a connected client
that has not sent its request yet, and for requests still being read, with the listening socket open)."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

from webhook_service.database.migrate import migrate

WORKERS = 2


def running(pid: int) -> bool:
    """Not yet exited (an exited process nobody has reaped yet holds no socket)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def bindable(port: int) -> bool:
    """Whether a new server could listen on the port, as gunicorn binds it (SO_REUSEADDR)."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind(("127.0.0.1", port))
            listener.listen()
        except OSError:
            return False
        return True


def test_workers_stop_at_once_when_the_master_is_killed_and_the_port_is_free_again(gunicorn, tmp_path):
    database = f"sqlite:///{tmp_path / 'service.db'}"
    migrate(database)
    served = gunicorn(f"""
data_dir = "{tmp_path / "data"}"
database_url = "{database}"
web_workers = {WORKERS}
web_threads = 2
""")
    workers = served.workers(WORKERS)
    address = ("127.0.0.1", served.port)
    # What kept workers alive after gunicorn's own check had noticed: a client connected that has not
    # sent its request yet (as a load balancer's spare connection), and a request whose body is arriving.
    with socket.create_connection(address) as waiting, socket.create_connection(address) as sending:
        sending.sendall(b"POST /webhooks/standard HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        time.sleep(0.2)  # both accepted by now
        os.kill(served.process.pid, signal.SIGKILL)
        killed = time.monotonic()
        while any(map(running, workers)) and time.monotonic() - killed < 3:
            time.sleep(0.02)
        gone_after = time.monotonic() - killed
        assert not any(map(running, workers)), f"workers still running {gone_after:.1f} s after the master died"
        # The kernel kills them as the master dies (PR_SET_PDEATHSIG); a process's exit still takes a
        # while on a loaded machine (1.4 s seen under a full parallel run beside a dsync writer). Without
        # the signal they stayed until gunicorn's own check, or as long as a client kept them busy.
        assert gone_after < 2.5, gone_after
        # The kernel shows a worker's main thread as exited a moment before its last thread has closed the
        # process's files; under load that moment can be long enough to catch. Give it the same second.
        while not bindable(served.port) and time.monotonic() - killed < gone_after + 1.0:
            time.sleep(0.02)
        assert bindable(served.port), f"port still taken {time.monotonic() - killed:.1f} s after the master died"
        assert waiting.recv(1) == b"" and sending.recv(1) == b""  # their connections closed, not left hanging
