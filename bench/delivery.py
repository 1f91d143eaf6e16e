"""Push delivery benchmark: the service's worker delivering the event feed to a loopback receiver that
verifies every request with the official standardwebhooks library, against the same receiver fed by a
plain loop of signed POSTs from one process (the ceiling), in one run.

    .venv/bin/python bench/delivery.py [--events 3000] [--large 15000] [--rate 100] [--duration 20]
                                       [--database-url postgresql+psycopg://...]

Three measurements:
- throughput: `events` feed events waiting for one endpoint, then `webhook-service worker` (its default
  processes and threads) started; events per second between the receiver's first and last receipt
  (the worker's start-up not counted), against the ceiling loop sending the same bodies;
- memory: the worker's peak resident memory (supervisor and consumer processes together) with `events`
  and with `large` events waiting: it should not grow with the number waiting;
- latency: `webhook-service web` (gunicorn) and `worker` together, webhooks POSTed at `rate` per second
  for `duration` seconds; p50/p99 from each webhook's 2xx to the receiver's receipt of its
  message.received.
The receiver runs in a process of its own (HTTP/1.1, keep-alive, a thread per connection). Feed events
are inserted in bulk, each naming one of a few hundred real messages, so rendering does the real work.
Goals (docs/benchmarks.md): ratio >= 0.7, p99 < 250 ms, memory flat.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa
from standardwebhooks.webhooks import Webhook

from bench.support import free_port, peak_rss_kib_tree
from webhook_service.app import create_app
from webhook_service.database import feed
from webhook_service.database.migrate import migrate
from webhook_service.database.tables import EVENTS, Base
from webhook_service.delivery.payloads import render_payloads
from webhook_service.runtime import Runtime
from webhook_service.settings import load_settings

INTAKE_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ENDPOINT_SECRET = "whsec_" + "QkVOQ0hCRU5DSEJFTkNIQkVOQ0hCRU5DSEJFTkNI"
TENANT = "00000000-0000-0000-0000-000000000000"
MESSAGES = 300


# The receiver --------------------------------------------------------------------------------------


def _serve_receiver(port: int, ready: multiprocessing.Event) -> None:
    verifier = Webhook(ENDPOINT_SECRET)
    lock = threading.Lock()
    state: dict = {"count": 0, "bad": 0, "first": None, "last": None, "receipts": {}}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            now = time.time()
            try:
                payload = verifier.verify(body, dict(self.headers.items()))
            except Exception:  # noqa: BLE001  # any failure to verify is counted, not raised
                payload = None
            with lock:
                if payload is None:
                    state["bad"] += 1
                else:
                    state["count"] += 1
                    state["first"] = state["first"] or now
                    state["last"] = now
                    data = payload.get("data") or {}
                    if payload.get("type") == "message.received" and "providerMessageId" in data:
                        state["receipts"].setdefault(data["providerMessageId"], now)
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            with lock:
                body = json.dumps(state).encode()
                if self.path == "/reset":
                    state.update(count=0, bad=0, first=None, last=None, receipts={})
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    ready.set()
    server.serve_forever()


def receiver_state(port: int, reset: bool = False) -> dict:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/reset" if reset else "/state")
    state = json.loads(connection.getresponse().read())
    connection.close()
    return state


def wait_for_count(port: int, count: int, process: subprocess.Popen | None, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = receiver_state(port)
        if state["count"] >= count:
            return state
        if process is not None and process.poll() is not None:
            raise SystemExit(f"the worker exited with {process.returncode}")
        time.sleep(0.1)
    raise SystemExit(f"only {receiver_state(port)['count']} of {count} deliveries arrived within {timeout:.0f} s")


# The service ---------------------------------------------------------------------------------------


def write_config(work: Path, receiver_port: int, web_port: int, database_url: str | None) -> Path:
    work.mkdir(parents=True, exist_ok=True)
    config = work / "service.toml"
    database = f'database_url = "{database_url}"\n' if database_url else ""
    config.write_text(f"""
data_dir = "{work / "data"}"
{database}log_level = "{os.environ.get("BENCH_LOG_LEVEL", "WARNING")}"
secret_key = "bench-secret-key-0123456789abcdef0123456789"
public_base_url = "http://127.0.0.1:{web_port}"
port = {web_port}
[delivery]
allow_http = true
allow_private_networks = ["127.0.0.0/8"]
[[delivery.endpoints]]
tenant = "{TENANT}"
name = "bench"
url = "http://127.0.0.1:{receiver_port}/hook"
secret = "{ENDPOINT_SECRET}"
[[tenants]]
id = "{TENANT}"
[[connections]]
provider = "standard"
name = "bench"
tenant = "{TENANT}"
secrets = ["{INTAKE_SECRET}"]
""")
    return config


def fresh_database(database_url: str | None) -> None:
    """An empty PostgreSQL database for the run (a SQLite one is new in each work directory)."""
    if not database_url:
        return
    migrate(database_url)
    engine = sa.create_engine(database_url)
    with engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(table.delete())
    engine.dispose()


def webhook(provider_message_id: str, text: str) -> tuple[bytes, dict]:
    body = json.dumps(
        {
            "type": "message.received",
            "data": {
                "providerMessageId": provider_message_id,
                "from": "+15550001111",
                "to": ["+15551234567"],
                "text": text,
            },
        }
    ).encode()
    now = datetime.now(UTC)
    webhook_id = f"msg_{provider_message_id}"
    headers = {
        "Content-Type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(INTAKE_SECRET).sign(msg_id=webhook_id, timestamp=now, data=body),
    }
    return body, headers


def populate(config: Path, events: int) -> list[bytes]:
    """The endpoint, MESSAGES real messages through the intake, then `events` feed events naming them,
    inserted in bulk. Returns some of the bodies the worker will send (for the ceiling loop)."""
    os.environ["WEBHOOK_SERVICE_CONFIG"] = str(config)
    settings = load_settings()
    migrate(settings.effective_database_url)
    runtime = Runtime(settings)
    runtime.endpoints.sync_declared(settings.delivery.endpoints)  # before the events: it starts at the feed's end
    client = create_app(runtime=runtime).test_client()
    for index in range(MESSAGES):
        body, headers = webhook(f"seed-{index}", f"benchmark message {index} \U0001f4e6")
        assert client.post("/webhooks/standard/bench", data=body, headers=headers).status_code == 200
    with runtime.db.reading() as session:
        seeds = session.execute(sa.select(EVENTS).where(EVENTS.c.type == feed.MESSAGE_RECEIVED)).all()
    with runtime.db.writing() as conn:
        for start in range(0, events - len(seeds), 5000):
            rows = [
                {**seeds[index % len(seeds)]._asdict(), "created_at": datetime.now(UTC)}
                for index in range(start, min(start + 5000, events - len(seeds)))
            ]
            for row in rows:
                del row["id"]
            feed.append(conn, rows)
    with runtime.db.reading() as session:
        sample = session.execute(sa.select(EVENTS).order_by(EVENTS.c.id).limit(200)).all()
        bodies = list(render_payloads(session, sample, runtime.links.attachment_url).values())
    runtime.close()
    return bodies


def service(command: str, config: Path, log: Path) -> subprocess.Popen:
    env = dict(os.environ, WEBHOOK_SERVICE_CONFIG=str(config), PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-m", "webhook_service.cli", command],
        env=env,
        cwd=ROOT,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


# Measurements --------------------------------------------------------------------------------------


def ceiling(receiver_port: int, bodies: list[bytes], count: int) -> float:
    """Events per second from a plain loop of signed POSTs on one keep-alive connection."""
    signer = Webhook(ENDPOINT_SECRET)
    connection = http.client.HTTPConnection("127.0.0.1", receiver_port, timeout=30)
    started = time.monotonic()
    for index in range(count):
        body = bodies[index % len(bodies)]
        now = datetime.now(UTC)
        webhook_id = f"evt_{index}_ceiling"
        connection.request(
            "POST",
            "/hook",
            body=body,
            headers={
                "Content-Type": "application/json",
                "webhook-id": webhook_id,
                "webhook-timestamp": str(int(now.timestamp())),
                "webhook-signature": signer.sign(msg_id=webhook_id, timestamp=now, data=body),
            },
        )
        response = connection.getresponse()
        response.read()
    elapsed = time.monotonic() - started
    connection.close()
    return count / elapsed


def delivered_by_worker(work: Path, receiver_port: int, events: int, database_url: str | None) -> tuple[float, int]:
    """(events per second, the worker's peak RSS in KiB) for `events` waiting when it starts."""
    web_port = free_port()
    config = write_config(work, receiver_port, web_port, database_url)
    fresh_database(database_url)
    populate(config, events)
    receiver_state(receiver_port, reset=True)
    worker = service("worker", config, work / "worker.log")
    try:
        state = wait_for_count(receiver_port, events, worker, timeout=max(120, events / 50))
        rss = peak_rss_kib_tree(worker.pid)
    finally:
        stop(worker)
    assert state["bad"] == 0, f"{state['bad']} deliveries did not verify"
    return (state["count"] - 1) / (state["last"] - state["first"]), rss


def latency(work: Path, receiver_port: int, rate: float, duration: float, database_url: str | None) -> dict:
    web_port = free_port()
    config = write_config(work, receiver_port, web_port, database_url)
    fresh_database(database_url)
    populate(config, MESSAGES)
    receiver_state(receiver_port, reset=True)
    web = service("web", config, work / "web.log")
    worker = service("worker", config, work / "worker.log")
    answered: dict[str, float] = {}
    errors = 0
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                http.client.HTTPConnection("127.0.0.1", web_port, timeout=1).connect()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("the web process did not start") from None
                time.sleep(0.1)
        time.sleep(2)  # the worker's start-up
        requests = [webhook(f"live-{index}", f"live {index}") for index in range(int(rate * duration))]
        connection = http.client.HTTPConnection("127.0.0.1", web_port, timeout=30)
        start = time.monotonic()
        for index, (body, headers) in enumerate(requests):
            due = start + index / rate
            if due > time.monotonic():
                time.sleep(due - time.monotonic())
            connection.request("POST", "/webhooks/standard/bench", body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            if response.status == 200:
                answered[f"live-{index}"] = time.time()
            else:
                errors += 1
        deadline = time.monotonic() + 60
        while not all(key in (state := receiver_state(receiver_port))["receipts"] for key in answered):
            if time.monotonic() > deadline:
                raise SystemExit("not every live webhook was delivered within 60 s")
            time.sleep(0.2)
    finally:
        stop(web)
        stop(worker)
    delays = sorted(state["receipts"][key] - at for key, at in answered.items())
    return {
        "webhooks": len(answered),
        "errors": errors,
        "p50_ms": 1000 * statistics.median(delays),
        "p99_ms": 1000 * delays[int(0.99 * (len(delays) - 1))],
        "max_ms": 1000 * delays[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=3000, help="events waiting for the throughput run")
    parser.add_argument("--large", type=int, default=15000, help="events waiting for the memory comparison")
    parser.add_argument("--rate", type=float, default=100.0, help="webhooks/s for the latency run")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of the latency run")
    parser.add_argument("--database-url", help="PostgreSQL instead of SQLite (its tables are emptied)")
    args = parser.parse_args()

    receiver_port = free_port()
    ready = multiprocessing.Event()
    receiver = multiprocessing.Process(target=_serve_receiver, args=(receiver_port, ready), daemon=True)
    receiver.start()
    ready.wait(10)
    root = Path(tempfile.mkdtemp(prefix="bench-delivery-"))
    try:
        service_rate, small_rss = delivered_by_worker(root / "small", receiver_port, args.events, args.database_url)
        bodies = populate(write_config(root / "ceiling", receiver_port, free_port(), None), MESSAGES)
        receiver_state(receiver_port, reset=True)
        ceiling_rate = ceiling(receiver_port, bodies, args.events)
        large_rate, large_rss = delivered_by_worker(root / "large", receiver_port, args.large, args.database_url)
        timing = latency(root / "latency", receiver_port, args.rate, args.duration, args.database_url)
    finally:
        receiver.terminate()

    database = "PostgreSQL" if args.database_url else "SQLite"
    print(f"\npush delivery benchmark: {database}, {os.cpu_count()} CPUs, the worker's default processes and threads")
    print(f"{'':<34} {'events/s':>9}")
    print(f"{'plain loop of signed POSTs':<34} {ceiling_rate:>9.0f}")
    print(f"{f'worker, {args.events} events waiting':<34} {service_rate:>9.0f}")
    print(f"{f'worker, {args.large} events waiting':<34} {large_rate:>9.0f}")
    ratio = service_rate / ceiling_rate
    print(
        f"\nthroughput ratio (worker / plain loop): {ratio:.2f}  (goal >= 0.70: {'met' if ratio >= 0.7 else 'NOT met'})"
    )
    growth = large_rss / small_rss
    print(
        f"worker peak RSS: {small_rss / 1024:.0f} MiB with {args.events} waiting, {large_rss / 1024:.0f} MiB with "
        f"{args.large} ({growth:.2f}x for {args.large / args.events:.0f}x the events)"
    )
    p99 = timing["p99_ms"]
    print(
        f"webhook 2xx to receipt at {args.rate:.0f}/s: p50 {timing['p50_ms']:.0f} ms, p99 {p99:.0f} ms, "
        f"max {timing['max_ms']:.0f} ms over {timing['webhooks']} webhooks ({timing['errors']} errors)  "
        f"(goal p99 < 250 ms: {'met' if p99 < 250 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
