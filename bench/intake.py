"""Webhook intake benchmark: this service under gunicorn on its embedded defaults (SQLite in WAL mode,
synchronous=FULL, so every 200 is a durable commit) against a bare Flask endpoint that returns 200,
on the same gunicorn settings, measured in the same run.

    .venv/bin/python bench/intake.py [--duration 10] [--concurrency 16] [--rate 100] [--worker-class gthread]

Two measurements per server:
- throughput: `concurrency` closed-loop clients on keep-alive connections, as fast as answers come;
- latency at moderate load: an open-loop schedule of `rate` requests per second (latency counted from
  the scheduled send time, so a stalled server cannot hide its queue), p50/p99.
Requests are distinct signed Standard Webhooks inbound messages (signing happens before timing).
Goals: docs/benchmarks.md. This script prints the throughput ratio to bare Flask (the ceiling) against
0.5 and the p99 at moderate load against 50 ms; the goal's comparison with a hand-written receiver, its
PostgreSQL run and its 2,000-request burst are not measured here.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from datetime import UTC

from bench.support import free_port

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TENANT = "00000000-0000-0000-0000-000000000000"


def wait_for(port: int, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listening on {port} after {timeout} s")


# The service's own (webhook_service/gunicorn_worker.py, with its default limits); "gthread" is gunicorn's.
SERVICE_WORKER = "webhook_service.gunicorn_worker.RequestBufferingWorker"


def gunicorn(
    target: str, port: int, workers: int, threads: int, worker_class: str, env: dict, log: Path
) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--worker-class",
        worker_class,
        "--threads",
        str(threads),
        "--keep-alive",
        "30",
        target,
    ]
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    wait_for(port, process)
    return process


def build_requests(count: int, prefix: str) -> list[tuple[bytes, dict]]:
    from datetime import datetime

    from standardwebhooks.webhooks import Webhook

    signer = Webhook(SECRET)
    now = datetime.now(UTC)
    requests = []
    for index in range(count):
        body = json.dumps(
            {
                "type": "message.received",
                "data": {
                    "providerMessageId": f"{prefix}-{index}",
                    "from": "+15550001111",
                    "to": ["+15551234567"],
                    "text": f"benchmark message {index} \U0001f4e6",
                },
            }
        ).encode()
        webhook_id = f"msg_{prefix}_{index}"
        headers = {
            "Content-Type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signer.sign(msg_id=webhook_id, timestamp=now, data=body.decode()),
        }
        requests.append((body, headers))
    return requests


def _client(
    port: int,
    path: str,
    requests,
    start_at: float,
    stop_at: float,
    interval: float | None,
    results: multiprocessing.Queue,
) -> None:
    """One keep-alive connection. interval None: closed loop; otherwise send at fixed times."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    latencies, errors, sent = [], 0, 0
    while time.monotonic() < start_at:
        time.sleep(0.001)
    next_send = start_at
    for body, headers in requests:
        now = time.monotonic()
        if now >= stop_at:
            break
        if interval is not None:
            if next_send > now:
                time.sleep(next_send - now)
            scheduled = next_send
            next_send += interval
        else:
            scheduled = now
        try:
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                errors += 1
        except (OSError, http.client.HTTPException):
            errors += 1
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        latencies.append(time.monotonic() - scheduled)
        sent += 1
    results.put((latencies, errors, sent))


def load(port: int, path: str, requests, clients: int, duration: float, rate: float | None) -> dict:
    """Run `clients` client processes for `duration` seconds; rate None means closed loop."""
    results: multiprocessing.Queue = multiprocessing.Queue()
    start_at = time.monotonic() + 0.5
    interval = clients / rate if rate else None
    share = len(requests) // clients
    processes = [
        multiprocessing.Process(
            target=_client,
            args=(port, path, requests[i * share : (i + 1) * share], start_at, start_at + duration, interval, results),
        )
        for i in range(clients)
    ]
    for process in processes:
        process.start()
    collected = [results.get() for _ in processes]
    for process in processes:
        process.join()
    latencies = sorted(value for lat, _, _ in collected for value in lat)
    sent = sum(s for _, _, s in collected)
    errors = sum(e for _, e, _ in collected)
    return {
        "requests": sent,
        "errors": errors,
        "rps": sent / duration,
        "p50_ms": 1000 * statistics.median(latencies) if latencies else float("nan"),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))] if latencies else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--concurrency", type=int, default=16, help="closed-loop clients for throughput")
    parser.add_argument("--rate", type=float, default=100.0, help="requests/s for the latency measurement")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (both servers)")
    parser.add_argument("--threads", type=int, default=8, help="gunicorn threads per worker (both servers)")
    parser.add_argument("--worker-class", default=SERVICE_WORKER, help="gunicorn worker class (both servers)")
    args = parser.parse_args()

    from webhook_service.database.migrate import migrate

    work = Path(tempfile.mkdtemp(prefix="bench-intake-"))
    config = work / "service.toml"
    config.write_text(f"""
data_dir = "{work / "data"}"
log_level = "WARNING"
[[tenants]]
id = "{TENANT}"
[[connections]]
provider = "standard"
name = "bench"
tenant = "{TENANT}"
secrets = ["{SECRET}"]
""")
    env = dict(os.environ, WEBHOOK_SERVICE_CONFIG=str(config), PYTHONPATH=str(ROOT))
    database = work / "data" / "service.db"
    migrate(f"sqlite:///{database}")

    budget = int(max(args.rate, 3000) * args.duration * 2) + 1000
    servers = {
        "bare Flask 200": ("bench.bare_app:app", "/hook"),
        "webhook intake": ("webhook_service.wsgi:app", "/webhooks/standard/bench"),
    }
    report = {}
    for label, (target, path) in servers.items():
        port = free_port()
        log = work / f"{label.split()[0]}.log"
        process = gunicorn(target, port, args.workers, args.threads, args.worker_class, env, log)
        try:
            warmup = load(port, path, build_requests(200, f"warm-{label[:4]}"), 4, 1.0, None)
            throughput = load(
                port, path, build_requests(budget, f"tp-{label[:4]}"), args.concurrency, args.duration, None
            )
            latency = load(
                port,
                path,
                build_requests(int(args.rate * args.duration) + 100, f"lat-{label[:4]}"),
                min(args.concurrency, 8),
                args.duration,
                args.rate,
            )
        finally:
            process.terminate()
            process.wait(timeout=30)
        report[label] = (throughput, latency, warmup)

    with sqlite3.connect(database) as db:
        stored = db.execute("select count(*) from messages").fetchone()[0]
        raw = db.execute("select count(*) from raw_requests").fetchone()[0]

    print(
        f"\nwebhook intake benchmark: gunicorn {args.workers} workers x {args.threads} threads "
        f"({args.worker_class.rsplit('.', 1)[-1]}), "
        f"{args.duration:.0f} s per measurement, {os.cpu_count()} CPUs"
    )
    print(f"{'server':<16} {'throughput':>14} {'errors':>7} {'p50 @load':>10} {'p99 @load':>10} {'load':>9}")
    for label, (throughput, latency, _) in report.items():
        print(
            f"{label:<16} {throughput['rps']:>10.0f} r/s {throughput['errors']:>7} "
            f"{latency['p50_ms']:>8.1f}ms {latency['p99_ms']:>8.1f}ms {latency['rps']:>5.0f} r/s"
        )
    bare, intake = report["bare Flask 200"][0], report["webhook intake"][0]
    ratio = intake["rps"] / bare["rps"]
    p99 = report["webhook intake"][1]["p99_ms"]
    print(f"\nthroughput ratio (intake / bare): {ratio:.2f}  (goal >= 0.50: {'met' if ratio >= 0.5 else 'NOT met'})")
    print(f"intake p99 at {args.rate:.0f} r/s: {p99:.1f} ms  (goal < 50 ms: {'met' if p99 < 50 else 'NOT met'})")
    accepted = sum(run["requests"] - run["errors"] for run in report["webhook intake"])
    print(f"durability: {stored} messages and {raw} raw requests in the database for {accepted} answered 200")


if __name__ == "__main__":
    main()
