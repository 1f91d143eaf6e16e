"""Where the intake's CPU goes, per request and per phase, in one process without gunicorn or a network:
distinct signed Standard Webhooks requests go straight into the WSGI app from `--threads` threads, and
the same requests into the bare Flask endpoint and the hand-written receiver (bench/bare_app.py,
bench/peer_app.py) for comparison. CPU time is the process's (all its threads), so a machine busy with
other work changes it less than it changes throughput.

    .venv/bin/python bench/intake_phases.py [--requests 3000] [--threads 8] [--database-url URL]

Phases of the intake, from a profile of a single-threaded run (the profiler's overhead spread in
proportion), scaled to the measured CPU per request:
- http: Flask, the request id, reading the body, the public URL, the answer;
- verify: Basic auth and the provider's signature;
- parse: the provider's payload into events;
- prepare: normalizing the events into rows, the stored (redacted) request, the request log row;
- database: the group commit (its transaction: statements, commit, savepoints, locks);
- log and metrics: the JSON log line and the Prometheus metrics.
After the intake's row, the same for status reports ("delivered") of the messages it just stored: what
providers send most of (two or three per message sent), which the hand-written receiver does not take.
The group commit's own CPU per request under `--threads` is measured directly too (its leader thread's).
`--database-url postgresql://...` runs against a new database on that server, dropped afterwards.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.intake import SECRET, BenchDatabase, build_requests, build_status_reports

# Phase: the functions whose cumulative time it is (by file and function name), outermost first. A
# function counted in an earlier phase is not counted again inside a later one's.
PHASES = {
    "database": [("webhook_service/database/engine.py", "run")],
    "verify": [("webhook_service/intake/processing.py", "authenticate")],
    "parse": [("webhook_service/providers/standard.py", "parse")],
    "prepare": [
        ("webhook_service/intake/redaction.py", "stored_form"),
        ("webhook_service/intake/request_log.py", "entry"),
        ("webhook_service/intake/message_store.py", "prepare"),
        ("webhook_service/intake/processing.py", "<genexpr>"),
    ],
    "log and metrics": [("webhook_service/intake/http.py", "_log")],
}


def environ(path: str, body: bytes, headers: dict) -> dict:
    result = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
        "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": headers["Content-Type"],
        "REMOTE_ADDR": "127.0.0.1",
    }
    for name, value in headers.items():
        if name != "Content-Type":
            result["HTTP_" + name.upper().replace("-", "_")] = value
    return result


class Caller:
    def __init__(self, app, path: str):
        self.app, self.path, self.refused = app, path, []

    def __call__(self, body: bytes, headers: dict) -> None:
        def start_response(status, _headers, _exc_info=None):
            if not status.startswith("200"):
                self.refused.append(status)

        answer = self.app(environ(self.path, body, headers), start_response)
        b"".join(answer)
        if hasattr(answer, "close"):
            answer.close()


def cpu_per_request(call: Caller, requests: list, threads: int) -> tuple[float, float]:
    """CPU and wall time per request, in ms."""
    started, cpu = time.perf_counter(), time.process_time()
    shares = [requests[i::threads] for i in range(threads)]
    workers = [threading.Thread(target=lambda share=share: [call(*request) for request in share]) for share in shares]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if call.refused:
        raise SystemExit(f"{len(call.refused)} requests refused: {call.refused[:3]}")
    count = len(requests)
    return 1000 * (time.process_time() - cpu) / count, 1000 * (time.perf_counter() - started) / count


def phase_shares(call: Caller, requests: list) -> dict[str, float]:
    profile = cProfile.Profile(time.thread_time)  # CPU, not waiting for the disk
    profile.enable()
    for request in requests:
        call(*request)
    profile.disable()
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    total = sum(inline for (_, _, name), (_, _, inline, _, _) in stats.items())
    shares, counted = {}, set()
    for phase, functions in PHASES.items():
        spent = 0.0
        for (file, _line, name), (_, _, _, cumulative, _) in stats.items():
            if name in [f for suffix, f in functions if file.endswith(suffix)] and (file, name) not in counted:
                spent += cumulative
                counted.add((file, name))
        shares[phase] = spent / total
    shares["http"] = 1.0 - sum(shares.values())
    return shares


def leader_cpu(runtime) -> dict:
    """Wrap the group commit to measure its leader's CPU per unit."""
    from webhook_service.database import engine

    totals = {"cpu": 0.0, "units": 0, "batches": 0}
    original = engine.GroupCommit._commit_next_batch

    def timed(self, *args) -> None:
        units = min(len(self._queue), self._max_batch)
        started = time.thread_time()
        original(self, *args)
        totals["cpu"] += time.thread_time() - started
        totals["units"] += units
        totals["batches"] += 1

    engine.GroupCommit._commit_next_batch = timed  # type: ignore[method-assign]
    return totals


def measured(label: str, call: Caller, requests: list, threads: int, totals: dict | None) -> tuple[str, float]:
    """The line of one measurement (CPU and wall time per request, and the group commit's share of it),
    and the CPU per request."""
    before = dict(totals) if totals else None
    cpu, wall = cpu_per_request(call, requests, threads)
    line = f"  {label:<16} CPU {cpu:6.3f}  wall {wall:6.3f}"
    if totals and before is not None and totals["units"] > before["units"]:
        units, batches = totals["units"] - before["units"], totals["batches"] - before["batches"]
        line += (
            f"  (group commit: {(totals['cpu'] - before['cpu']) * 1000 / units:.3f} of it, "
            f"{units / batches:.1f} requests per transaction)"
        )
    return line, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--database-url", default="", help="postgresql://... (default: SQLite in a temporary dir)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-phases-"))
    database = BenchDatabase("postgresql" if args.database_url else "sqlite", work, args.database_url)
    try:
        database.prepare()
        config = database.service_config()
        os.environ.update(WEBHOOK_SERVICE_CONFIG=str(config), PEER_SECRET=SECRET, PEER_DATABASE=database.peer_database)
        from webhook_service.observability.metrics_sharing import WEB, share_metrics
        from webhook_service.settings import load_settings

        settings = load_settings()
        share_metrics(settings.data_dir, WEB).mkdir(parents=True, exist_ok=True)
        from bench import bare_app, peer_app
        from webhook_service.app import create_app
        from webhook_service.database.request_counts import request_counts
        from webhook_service.runtime import Runtime

        runtime = Runtime(settings)
        servers = {
            "bare Flask 200": Caller(bare_app.app, "/hook"),
            "hand-written": Caller(peer_app.create_app(), "/hook"),
            "webhook intake": Caller(create_app(runtime=runtime), "/webhooks/standard/bench"),
        }
        if database.kind == "sqlite":
            with sqlite3.connect(database.peer_database) as peer:
                peer.execute("PRAGMA journal_mode=WAL")
        print(
            f"\nCPU per request in one process, {args.threads} threads, {args.requests} requests ({database.kind}; ms)"
        )
        for label, call in servers.items():
            tag = label.split()[0]
            prefix = f"{tag}-{os.getpid()}"
            call_requests = build_requests(args.requests + 200, prefix)
            for request in call_requests[:200]:
                call(*request)
            totals = leader_cpu(runtime) if label == "webhook intake" else None
            line, cpu = measured(label, call, call_requests[200:], args.threads, totals)
            print(line)
            if label == "webhook intake":
                # The reports providers send after a message (the receiver above takes messages only).
                reports = build_status_reports(args.requests + 200, prefix, "delivered")[200:]
                print(measured("  status reports", call, reports, args.threads, totals)[0])
                shares = phase_shares(call, build_requests(min(args.requests, 1500), f"profile-{os.getpid()}"))
                print("  intake by phase, single-threaded profile scaled to the CPU above:")
                for phase, share in sorted(shares.items(), key=lambda item: -item[1]):
                    print(f"    {phase:<16} {share * cpu:6.3f}  ({share:5.1%})")
        request_counts(runtime.db).close()  # its last counts, before the database goes
        runtime.db.dispose()
    finally:
        database.drop()


if __name__ == "__main__":
    main()
