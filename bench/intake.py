"""Webhook intake benchmark: three servers on the same gunicorn settings and the same requests, measured
in one run, on SQLite and on PostgreSQL.

- bare Flask 200 (bench/bare_app.py): the ceiling;
- the hand-written receiver (bench/peer_app.py): verify with the standardwebhooks library, parse, one
  insert, a durable commit per request;
- this service's intake: the raw request, the canonical message, its feed event and its request log row
  durable in the database before the 200.

    .venv/bin/python bench/intake.py [--databases sqlite,postgresql] [--duration 8] [--concurrency 16]
                                     [--rate 100] [--burst 2000] [--burst-connections 64]

Per server: throughput (`concurrency` closed-loop clients on keep-alive connections, as fast as answers
come), in `rounds` rounds that take the servers in turn (all of them are up throughout), so that a
machine whose speed drifts during the run (a shared host) slows each server alike; the ratios are the
medians of each round's ratio, the servers' throughputs their medians. CPU per request during those
rounds: the server's processes (CPU/req), the load clients (client), a local PostgreSQL server's processes
(db; SQLite works inside the server's), and the whole machine (machine: all of those plus the kernel),
with the share of the CPUs kept busy (busy). When both keep the CPUs busy, the throughput ratio of two
servers is the inverse ratio of their machine CPU per request, which the report prints beside it.
Then, with `--interleaved` seconds (default 30), the servers take turns every `--slice` seconds (0.5)
under the same `concurrency` clients, each of which holds a keep-alive connection to every server and
sends to the one whose turn it is: on a shared host whose speed drifts by a third within seconds, rounds
of several seconds each still compare a server at one speed with another at another; turns of half a
second compare them at the same moments. Its ratio is the one the intake goal is judged by. Beside it,
the median of adjacent turns' ratios (each turn of the intake against the receiver's turn next to it) and
its middle half, which a few turns that catch a stall of the host move less.
Then latency at moderate load (an open-loop schedule of `rate` requests per second, latency counted from
the scheduled send time, so a stalled server cannot hide its queue); for the two that store, a burst of
`burst` requests from `burst-connections` connections at once. Requests are distinct signed Standard
Webhooks inbound messages (signed before timing). SQLite is the service's embedded default (WAL,
synchronous=FULL); PostgreSQL runs in a database this script creates on `--postgres-url` and drops after.
`--webhooks reports` sends, instead of new inbound messages, the first status report ("sent") of as many
outbound messages the service has not seen (what providers send most), which the receiver stores the same
way. `--prefill N` stores N messages (with their raw requests, request log rows and feed events, and as many
rows of the receiver's) before the servers start: a deployment's volume, which an empty database hides.
Goals (docs/benchmarks.md): intake >= 1.5x the hand-written receiver (at least 1.0x; in the interleaved
turns, or in the rounds' median without them), p99 < 50 ms at
100 r/s, the burst answered with 0 errors and p99 < 2 s.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import multiprocessing
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from datetime import UTC, datetime

from bench.support import cpu_seconds_named, cpu_seconds_tree, free_port, machine_busy_seconds
from tests.service.private_postgres import PrivateCluster, server_programs
from webhook_service.observability.metrics_sharing import MULTIPROCESS_VARIABLE, WEB, metrics_directory, start_fresh

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
    """`count` distinct signed webhooks, each of a new inbound message `<prefix>-<index>`."""
    return [
        _signed(
            {
                "type": "message.received",
                "data": {
                    "providerMessageId": f"{prefix}-{index}",
                    "from": "+15550001111",
                    "to": ["+15551234567"],
                    "text": f"benchmark message {index} \U0001f4e6",
                },
            },
            f"msg_{prefix}_{index}",
        )
        for index in range(count)
    ]


def build_status_reports(count: int, prefix: str, status: str) -> list[tuple[bytes, dict]]:
    """Signed status reports (`status`) for the messages `build_requests(count, prefix)` made."""
    occurred_at = datetime.now(UTC).isoformat()
    return [
        _signed(
            {
                "type": "message.status",
                "data": {"providerMessageId": f"{prefix}-{index}", "status": status, "occurredAt": occurred_at},
            },
            f"status_{prefix}_{status}_{index}",
        )
        for index in range(count)
    ]


def build_first_reports(count: int, prefix: str) -> list[tuple[bytes, dict]]:
    """`count` distinct signed webhooks, each the first status report ("sent") of an outbound message
    `<prefix>-<index>` the service has not seen: what providers send most (the messages a business sends
    through them, reported as queued, sent, delivered), each stored as a report and its message's
    placeholder."""
    return build_status_reports(count, prefix, "sent")


# What `--webhooks` sends.
WEBHOOK_KINDS = {"messages": build_requests, "reports": build_first_reports}


def _signed(payload: dict, webhook_id: str) -> tuple[bytes, dict]:
    now = datetime.now(UTC)
    body = json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": _signer().sign(msg_id=webhook_id, timestamp=now, data=body.decode()),
    }
    return body, headers


@functools.cache
def _signer():
    from standardwebhooks.webhooks import Webhook

    return Webhook(SECRET)


class _Connection:
    """A keep-alive HTTP/1.1 client connection on a plain socket, for requests serialized in advance.

    The clients share the machine's CPUs with the server they measure, so what they spend per request is
    taken from the server: http.client built each request and parsed each answer's headers with the
    email package, 0.17 ms of CPU per request against 0.04 ms for this (one client, keep-alive, bare
    Flask), which sends bytes made before timing starts and reads the answer's status and length only.
    """

    def __init__(self, port: int):
        self._port = port
        self._socket: socket.socket | None = None
        self._buffer = b""

    def exchange(self, request: bytes) -> int:
        """Send one request, read its whole answer; its status (raises OSError on a broken connection)."""
        if self._socket is None:
            self._socket = socket.create_connection(("127.0.0.1", self._port), timeout=30)
            self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._buffer = b""
        self._socket.sendall(request)
        while (end := self._buffer.find(b"\r\n\r\n")) < 0:
            self._receive()
        head, self._buffer = self._buffer[:end].decode("latin-1"), self._buffer[end + 4 :]
        lines = head.split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        fields = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
        if "content-length" not in fields:
            raise OSError(f"answer without Content-Length: {lines[0]}")
        length = int(fields["content-length"])
        while len(self._buffer) < length:
            self._receive()
        self._buffer = self._buffer[length:]
        if fields.get("connection", "").lower() == "close":
            self.close()
        return status

    def _receive(self) -> None:
        assert self._socket is not None
        chunk = self._socket.recv(65536)
        if not chunk:
            raise OSError("connection closed by the server")
        self._buffer += chunk

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def serialize(path: str, body: bytes, headers: dict) -> bytes:
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n{head}\r\n".encode("latin-1") + body
    )


def _client(
    port: int,
    path: str,
    requests,
    start_at: float,
    stop_at: float,
    interval: float | None,
    results: multiprocessing.Queue,
) -> None:
    """One keep-alive connection. interval None: closed loop; otherwise send at fixed times, from
    start_at on."""
    prepared = [serialize(path, body, headers) for body, headers in requests]
    connection = _Connection(port)
    latencies, errors, sent = [], 0, 0
    while time.monotonic() < start_at:
        time.sleep(0.001)
    next_send = start_at
    cpu_started = time.process_time()
    for request in prepared:
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
            if connection.exchange(request) != 200:
                errors += 1
        except (OSError, ValueError, IndexError):
            errors += 1
            connection.close()
        latencies.append(time.monotonic() - scheduled)
        sent += 1
    connection.close()
    results.put((latencies, errors, sent, time.process_time() - cpu_started))


def load(port: int, path: str, requests, clients: int, duration: float, rate: float | None) -> dict:
    """Run `clients` client processes for `duration` seconds; rate None means closed loop."""
    results: multiprocessing.Queue = multiprocessing.Queue()
    start_at = time.monotonic() + 0.5
    interval = clients / rate if rate else None
    # At a rate, the clients take turns (client i starts i/clients of an interval later): an even
    # schedule, not every client sending at the same instant.
    offset = interval / clients if interval else 0.0
    processes = [
        multiprocessing.Process(
            target=_client,
            args=(port, path, requests[i::clients], start_at + i * offset, start_at + duration, interval, results),
        )
        for i in range(clients)
    ]
    for process in processes:
        process.start()
    collected = [results.get() for _ in processes]
    for process in processes:
        process.join()
    latencies = sorted(value for lat, _, _, _ in collected for value in lat)
    sent = sum(s for _, _, s, _ in collected)
    errors = sum(e for _, e, _, _ in collected)
    client_cpu = sum(c for _, _, _, c in collected)
    return {
        "requests": sent,
        "errors": errors,
        "rps": sent / duration,
        "client_cpu_ms": 1000 * client_cpu / max(sent, 1),
        "p50_ms": 1000 * statistics.median(latencies) if latencies else float("nan"),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))] if latencies else float("nan"),
    }


SERVERS = {
    "bare Flask 200": ("bench.bare_app:app", "/hook"),
    "hand-written": ("bench.peer_app:create_app()", "/hook"),
    "webhook intake": ("webhook_service.wsgi:app", "/webhooks/standard/bench"),
}
STORING = ("hand-written", "webhook intake")
SHORT_NAMES = {"bare": "bare Flask 200", "hand": "hand-written", "intake": "webhook intake"}


class BenchDatabase:
    """Where one run stores: a fresh SQLite file per server, or a fresh PostgreSQL database (this script
    creates it on the server and drops it afterwards)."""

    def __init__(self, kind: str, work: Path, postgres_url: str):
        self.kind = kind
        self._work = work
        self._admin_url = postgres_url
        self._name = f"bench_intake_{os.getpid()}"
        if kind == "postgresql":
            self._admin(f"DROP DATABASE IF EXISTS {self._name}", f"CREATE DATABASE {self._name}")
            self.service_url = _with_database(postgres_url, self._name, driver="postgresql+psycopg")
            self.peer_database = _with_database(postgres_url, self._name, driver="postgresql")
        else:
            (work / "data").mkdir(parents=True, exist_ok=True)
            self.service_url = f"sqlite:///{work / 'data' / 'service.db'}"
            self.peer_database = str(work / "peer.db")

    def prepare(self) -> None:
        from bench.peer_app import SCHEMA
        from webhook_service.database.migrate import migrate

        migrate(self.service_url)
        if self.kind == "postgresql":
            import psycopg

            with psycopg.connect(self.peer_database) as connection:
                connection.execute(SCHEMA)
        else:
            with sqlite3.connect(self.peer_database) as connection:
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute(SCHEMA)

    def service_config(self) -> Path:
        """The service's configuration file for this database: one Standard Webhooks connection."""
        config = self._work / "service.toml"
        config.write_text(f"""
data_dir = "{self._work / "data"}"
database_url = "{self.service_url}"
log_level = "WARNING"
[[tenants]]
id = "{TENANT}"
[[connections]]
provider = "standard"
name = "bench"
tenant = "{TENANT}"
secrets = ["{SECRET}"]
""")
        return config

    def prefill(self, count: int) -> None:
        """`count` messages stored already, each with its raw request, request log row and feed event, and
        as many rows in the receiver's table: the volume a deployment has after a while, which an empty
        database hides (an index grows deeper, and a statement that scans shows). Plain SQL, so that
        filling a million takes seconds, not an hour of webhooks; ids and keys as random as real ones."""
        if count <= 0:
            return
        if self.kind == "postgresql":
            import psycopg

            with psycopg.connect(self.peer_database) as connection:
                for statement in _PREFILL_POSTGRES:
                    connection.execute(statement.format(count=count, tenant=TENANT))
                connection.execute("SELECT setval('raw_requests_id_seq', %s)", (count,))
                connection.execute("ANALYZE")
            return
        with sqlite3.connect(self._work / "data" / "service.db") as service:
            for statement in _PREFILL_SQLITE:
                service.execute(statement.format(count=count, tenant=TENANT))
        with sqlite3.connect(self.peer_database) as peer:
            peer.execute(_PREFILL_SQLITE_RECEIVER.format(count=count))

    def counts(self) -> dict[str, int]:
        tables = ("messages", "status_events", "raw_requests", "events", "request_log", "peer_messages")
        if self.kind == "postgresql":
            import psycopg

            with psycopg.connect(self.peer_database) as connection:
                return {t: connection.execute(f"select count(*) from {t}").fetchone()[0] for t in tables}
        counts = {}
        with sqlite3.connect(self._work / "data" / "service.db") as service:
            for table in tables[:-1]:
                counts[table] = service.execute(f"select count(*) from {table}").fetchone()[0]
        with sqlite3.connect(self.peer_database) as peer:
            counts["peer_messages"] = peer.execute("select count(*) from peer_messages").fetchone()[0]
        return counts

    def drop(self) -> None:
        if self.kind == "postgresql":
            self._admin(f"DROP DATABASE IF EXISTS {self._name} WITH (FORCE)")

    def _admin(self, *statements: str) -> None:
        import psycopg

        with psycopg.connect(_with_database(self._admin_url, None, driver="postgresql"), autocommit=True) as admin:
            for statement in statements:
                admin.execute(statement)


# The prefilled rows: a webhook's as the intake stores one (a 160-byte body, a feed event with the
# message's JSON), under ids 1..count; on PostgreSQL the receiver's (same database) last.
_PREFILL_POSTGRES = [
    """INSERT INTO raw_requests (id, request_id, received_at, provider, connection, tenant_id, method, url, headers,
    body, remote_addr) SELECT g, md5('r' || g), now() - interval '1 day', 'standard', 'bench', '{tenant}', 'POST',
    'http://127.0.0.1/webhooks/standard/bench', '[["Content-Type", "application/json"]]',
    convert_to(repeat('x', 160), 'UTF8'), '127.0.0.1' FROM generate_series(1, {count}) g""",
    """INSERT INTO messages (id, tenant_id, provider, connection, provider_message_id, direction, from_number,
    to_numbers, text, has_content, status, status_updated_at, received_at, updated_at, extra, raw_request_id)
    SELECT md5('m' || g)::uuid::text, '{tenant}', 'standard', 'bench', 'prefill-' || md5('p' || g), 'inbound',
    '+15550001111', '["+15551234567"]', 'prefilled message ' || g, true, 'received', now(), now(), now(), '{{}}', g
    FROM generate_series(1, {count}) g""",
    """INSERT INTO request_log (request_id, received_at, provider, connection, tenant_id, outcome, http_status,
    method, url, body_bytes, raw_request_id, message_ids, provider_message_ids, addresses)
    SELECT md5('r' || g), now() - interval '1 day', 'standard', 'bench', '{tenant}', 'accepted', 200, 'POST',
    'http://127.0.0.1/webhooks/standard/bench', 160, g, jsonb_build_array(md5('m' || g)::uuid::text),
    jsonb_build_array('prefill-' || md5('p' || g)), '["+15550001111", "+15551234567"]'
    FROM generate_series(1, {count}) g""",
    """INSERT INTO events (tenant_id, type, message_id, created_at, data)
    SELECT '{tenant}', 'message.received', md5('m' || g)::uuid::text, now() - interval '1 day',
    jsonb_build_object('id', md5('m' || g)::uuid::text, 'providerMessageId', 'prefill-' || md5('p' || g),
    'from', '+15550001111', 'to', jsonb_build_array('+15551234567'), 'text', 'prefilled message ' || g,
    'status', 'received', 'attachments', '[]'::jsonb, 'statusHistory', '[]'::jsonb)
    FROM generate_series(1, {count}) g""",
    """INSERT INTO peer_messages SELECT 'prefill-' || md5('w' || g), 'prefill-' || md5('p' || g), '+15550001111',
    '["+15551234567"]', 'prefilled message ' || g, now() FROM generate_series(1, {count}) g""",
]
_SQLITE_SERIES = "WITH RECURSIVE series(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM series WHERE g < {count})"
_PREFILL_SQLITE = [
    _SQLITE_SERIES
    + """ INSERT INTO raw_requests (id, request_id, received_at, provider, connection, tenant_id, method, url,
    headers, body, remote_addr) SELECT g, lower(hex(randomblob(16))), '2026-01-01 00:00:00.000000', 'standard',
    'bench', '{tenant}', 'POST', 'http://127.0.0.1/webhooks/standard/bench', '[["Content-Type", "application/json"]]',
    randomblob(160), '127.0.0.1' FROM series""",
    _SQLITE_SERIES
    + """ INSERT INTO messages (id, tenant_id, provider, connection, provider_message_id, direction, from_number,
    to_numbers, text, has_content, status, status_updated_at, received_at, updated_at, extra, raw_request_id)
    SELECT lower(hex(randomblob(16))), '{tenant}', 'standard', 'bench', 'prefill-' || lower(hex(randomblob(8))),
    'inbound', '+15550001111', '["+15551234567"]', 'prefilled message ' || g, 1, 'received',
    '2026-01-01 00:00:00.000000', '2026-01-01 00:00:00.000000', '2026-01-01 00:00:00.000000', '{{}}', g FROM series""",
    """INSERT INTO request_log (request_id, received_at, provider, connection, tenant_id, outcome, http_status,
    method, url, body_bytes, raw_request_id, message_ids, provider_message_ids, addresses)
    SELECT request_id, received_at, provider, connection, tenant_id, 'accepted', 200, method, url, 160, id, '[]', '[]',
    '[]' FROM raw_requests""",
    """INSERT INTO events (tenant_id, type, message_id, created_at, data)
    SELECT tenant_id, 'message.received', id, received_at,
    json_object('id', id, 'providerMessageId', provider_message_id, 'text', text, 'status', 'received') FROM messages""",
]
_PREFILL_SQLITE_RECEIVER = (
    _SQLITE_SERIES
    + """ INSERT INTO peer_messages SELECT 'prefill-' || lower(hex(randomblob(16))), 'prefill-' || g, '+15550001111',
    '["+15551234567"]', 'prefilled message ' || g, '2026-01-01 00:00:00' FROM series"""
)


def _with_database(url: str, database: str | None, *, driver: str) -> str:
    import sqlalchemy as sa

    parsed = sa.engine.make_url(url).set(drivername=driver)
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


def warm_up(port: int, path: str, label: str, args) -> dict:
    # Until every warm-up request is answered: the workers may still be loading the app.
    return load(port, path, args.build(200, f"warm-{label[:4]}-{time.monotonic_ns()}"), 4, 120.0, None)


def start_metrics(data_dir: Path) -> Path:
    directory = metrics_directory(data_dir, WEB)
    start_fresh(directory)
    return directory


def group_commit_units(port: int, label: str) -> tuple[float, float]:
    """The intake's group commits so far, added up over its workers: (webhooks, transactions)."""
    if label != "webhook intake":
        return 0.0, 0.0
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as answer:
        exposition = answer.read().decode()
    # Its two unlabelled lines, "<name> <value>" (prometheus_client's parser is not imported here:
    # bench/intake_phases.py imports this module before it shares its metrics, as the client requires).
    values = dict(
        line.split(" ", 1) for line in exposition.splitlines() if line.startswith("database_group_commit_units_")
    )
    return (
        float(values.get("database_group_commit_units_sum", 0.0)),
        float(values.get("database_group_commit_units_count", 0.0)),
    )


def measure_throughput(label: str, port: int, path: str, args, server_pid: int) -> dict:
    tag = f"{label[:4]}-{time.monotonic_ns()}"
    budget = int(max(args.rate, 4000) * args.duration * 2) + 1000
    requests = args.build(budget, f"tp-{tag}")
    units_before = group_commit_units(port, label)
    cpu_before, database_before, machine_before = (
        cpu_seconds_tree(server_pid),
        cpu_seconds_named("postgres"),
        machine_busy_seconds(),
    )
    throughput = load(port, path, requests, args.concurrency, args.duration, None)
    units_after = group_commit_units(port, label)
    throughput["committed_units"], throughput["commits"] = (
        after - before for after, before in zip(units_after, units_before, strict=True)
    )
    answered = max(throughput["requests"], 1)
    throughput["server_cpu_ms"] = 1000 * (cpu_seconds_tree(server_pid) - cpu_before) / answered
    # A local PostgreSQL's own CPU (SQLite works inside the server's processes), and the whole machine's.
    throughput["database_cpu_ms"] = 1000 * (cpu_seconds_named("postgres") - database_before) / answered
    throughput["machine_cpu_ms"] = 1000 * (machine_busy_seconds() - machine_before) / answered
    return throughput


def combined(rounds: list[dict]) -> dict:
    """A server's rounds as one: the median throughput; errors, requests and CPU over all of them."""
    requests = sum(run["requests"] for run in rounds)
    return {
        "rps": statistics.median(run["rps"] for run in rounds),
        "requests": requests,
        "errors": sum(run["errors"] for run in rounds),
        "committed_units": sum(run["committed_units"] for run in rounds),
        "commits": sum(run["commits"] for run in rounds),
        **{
            key: sum(run[key] * run["requests"] for run in rounds) / max(requests, 1)
            for key in ("server_cpu_ms", "client_cpu_ms", "database_cpu_ms", "machine_cpu_ms")
        },
    }


def _switching_client(
    targets: list[tuple[int, str]], requests: list[list[tuple[bytes, dict]]], turn, answered, failed, stop
) -> None:
    """One keep-alive connection to each server; sends to the server whose turn it is (`turn`, -1: none)
    as fast as answers come, and counts each answer to the server that gave it."""
    connections = [_Connection(port) for port, _ in targets]
    prepared = [
        [serialize(path, body, headers) for body, headers in share]
        for (_, path), share in zip(targets, requests, strict=True)
    ]
    sent = [0] * len(targets)
    while not stop.value:
        server = turn.value
        if server < 0 or sent[server] >= len(prepared[server]):
            time.sleep(0.001)
            continue
        request, sent[server] = prepared[server][sent[server]], sent[server] + 1
        try:
            ok = connections[server].exchange(request) == 200
        except (OSError, ValueError, IndexError):
            ok = False
            connections[server].close()
        with answered.get_lock():
            answered[server] += 1
        if not ok:
            with failed.get_lock():
                failed[server] += 1
    for connection in connections:
        connection.close()


def measure_interleaved(servers: dict[str, tuple[subprocess.Popen, int, str]], args) -> dict[str, dict]:
    """The servers in turns of `args.slice` seconds for `args.interleaved` seconds in all (see the module's
    docstring): per server, its answers per second of its turns, its errors, and its processes' and a
    local PostgreSQL's CPU per request over its turns."""
    labels = list(servers)
    per_client = int(4000 * args.interleaved / len(labels) / args.concurrency) + 200
    turn, stop = multiprocessing.Value("i", -1), multiprocessing.Value("i", 0)
    answered, failed = multiprocessing.Array("i", len(labels)), multiprocessing.Array("i", len(labels))
    targets = [(port, path) for _, port, path in servers.values()]
    tag = time.monotonic_ns()
    clients = [
        multiprocessing.Process(
            target=_switching_client,
            args=(
                targets,
                [args.build(per_client, f"il-{tag}-{client}-{label[:4]}") for label in labels],
                turn,
                answered,
                failed,
                stop,
            ),
        )
        for client in range(args.concurrency)
    ]
    for client in clients:
        client.start()
    totals = {
        label: {"seconds": 0.0, "requests": 0, "errors": 0, "server_cpu": 0.0, "database_cpu": 0.0, "turns": 0}
        for label in labels
    }
    turn_rps: dict[str, list[float]] = {label: [] for label in labels}
    try:
        time.sleep(1.0)  # the clients prepare their requests
        ends_at, index = time.monotonic() + args.interleaved, 0
        while time.monotonic() < ends_at:
            server = index % len(labels)
            index += 1
            label, pid = labels[server], servers[labels[server]][0].pid
            before = (
                time.monotonic(),
                answered[server],
                failed[server],
                cpu_seconds_tree(pid),
                cpu_seconds_named("postgres"),
            )
            turn.value = server
            time.sleep(args.slice)
            turn.value = -1
            time.sleep(0.02)  # the answers under way come in, counted to this turn
            after = (
                time.monotonic(),
                answered[server],
                failed[server],
                cpu_seconds_tree(pid),
                cpu_seconds_named("postgres"),
            )
            total = totals[label]
            for key, position in (
                ("seconds", 0),
                ("requests", 1),
                ("errors", 2),
                ("server_cpu", 3),
                ("database_cpu", 4),
            ):
                total[key] += after[position] - before[position]
            total["turns"] += 1
            turn_rps[label].append((after[1] - before[1]) / max(after[0] - before[0], 1e-9))
    finally:
        stop.value = 1
        for client in clients:
            client.join(timeout=30)
    return {
        label: {
            # Every answer (for the durability check), those that came after their turn's end included.
            "answered": answered[server] - failed[server],
            "rps": total["requests"] / max(total["seconds"], 1e-9),
            "requests": total["requests"],
            "errors": total["errors"],
            "turns": total["turns"],
            "turn_rps": turn_rps[label],
            "server_cpu_ms": 1000 * total["server_cpu"] / max(total["requests"], 1),
            "database_cpu_ms": 1000 * total["database_cpu"] / max(total["requests"], 1),
        }
        for server, (label, total) in enumerate(totals.items())
    }


def measure_load(label: str, port: int, path: str, args) -> dict:
    tag = f"{label[:4]}-{time.monotonic_ns()}"
    result = {
        "latency": load(
            port,
            path,
            args.build(int(args.rate * args.duration) + 100, f"lat-{tag}"),
            min(args.concurrency, 8),
            args.duration,
            args.rate,
        )
    }
    if label in STORING and args.burst:
        requests = args.build(args.burst, f"burst-{tag}")
        result["burst"] = load(port, path, requests, args.burst_connections, 120.0, None)
    return result


def run_database(kind: str, args) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"bench-intake-{kind}-"))
    database = BenchDatabase(kind, work, args.postgres_url)
    servers: dict[str, tuple[subprocess.Popen, int, str]] = {}
    try:
        database.prepare()
        database.prefill(args.prefill)
        config = database.service_config()
        env = dict(
            os.environ,
            WEBHOOK_SERVICE_CONFIG=str(config),
            PYTHONPATH=str(ROOT),
            PEER_SECRET=SECRET,
            PEER_DATABASE=database.peer_database,
            **args.server_environment,
            # The intake's metrics in files, as `webhook-service web` keeps them (gunicorn_config.py), so
            # that its /metrics adds up both workers (the batches' sizes below).
            **{MULTIPROCESS_VARIABLE: str(start_metrics(work / "data"))},
        )
        for label in args.servers:
            target, path = SERVERS[label]
            port = free_port()
            log = work / f"{label.split()[0]}.log"
            servers[label] = (
                gunicorn(target, port, args.workers, args.threads, args.worker_class, env, log),
                port,
                path,
            )
        report: dict = {
            label: {"warmup": warm_up(port, path, label, args), "rounds": []}
            for label, (_, port, path) in servers.items()
        }
        for round_number in range(args.rounds):
            # Alternate the order, so that no server always follows the same one.
            order = list(servers) if round_number % 2 == 0 else list(reversed(servers))
            for label in order:
                process, port, path = servers[label]
                report[label]["rounds"].append(measure_throughput(label, port, path, args, process.pid))
        if args.interleaved > 0 and len(servers) > 1:
            report["interleaved"] = measure_interleaved(servers, args)
        for label, (_, port, path) in servers.items():
            report[label]["throughput"] = combined(report[label]["rounds"])
            report[label].update(measure_load(label, port, path, args))
        report["counts"] = database.counts()
        return report
    finally:
        for process, _, _ in servers.values():
            process.terminate()
            process.wait(timeout=30)
        database.drop()


def slow_flush_environment(delay_ms: float, cleanup: contextlib.ExitStack) -> dict[str, str]:
    """What makes a process's disk flushes `delay_ms` longer: bench/slow_flush.c, built here with gcc, loaded
    with LD_PRELOAD. (In a directory the PostgreSQL server's user can read.)"""
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        sys.exit("--flush-delay-ms needs a C compiler (gcc) to build bench/slow_flush.c")
    directory = Path(tempfile.mkdtemp(prefix="bench-slow-flush-"))
    cleanup.callback(shutil.rmtree, directory, ignore_errors=True)
    directory.chmod(0o755)
    library = directory / "slow_flush.so"
    source = ROOT / "bench" / "slow_flush.c"
    subprocess.run([compiler, "-O2", "-shared", "-fPIC", "-o", str(library), str(source), "-ldl"], check=True)
    library.chmod(0o755)
    return {"LD_PRELOAD": str(library), "FLUSH_DELAY_US": str(round(delay_ms * 1000))}


def slow_postgres(environment: dict[str, str], cleanup: contextlib.ExitStack) -> str:
    """A private PostgreSQL cluster whose processes run with `environment` (the shared server's flushes
    cannot be slowed), set as the shared one is: durable commits, 100 connections, 128 MB of buffers (and
    autovacuum on, as in a deployment: the shared server runs without). Its admin URL; it is stopped and
    removed when `cleanup` closes."""
    programs = server_programs()
    if programs is None:
        sys.exit("--flush-delay-ms with postgresql needs the machine's initdb and pg_ctl")
    cluster = PrivateCluster(
        *programs,
        settings={"fsync": "on", "max_connections": "100", "shared_buffers": "128MB"},
        environment=environment,
    )
    cleanup.callback(cluster.stop)
    cluster.start()
    return f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres"


def adjacent_turn_ratios(interleaved: dict, numerator: str, denominator: str) -> list[float]:
    """Each turn of `numerator` against the turn of `denominator` next to it (the servers take turns in a
    fixed order): a steadier estimate than the totals' ratio when a few turns catch a stall of the host."""
    return [
        mine / theirs
        for mine, theirs in zip(interleaved[numerator]["turn_rps"], interleaved[denominator]["turn_rps"], strict=False)
        if theirs
    ]


def round_ratios(report: dict, numerator: str, denominator: str) -> list[float]:
    return [
        mine["rps"] / theirs["rps"]
        for mine, theirs in zip(report[numerator]["rounds"], report[denominator]["rounds"], strict=True)
        if theirs["rps"]
    ]


def _busy_share(throughput: dict) -> float:
    """How much of the machine's CPUs were busy during the throughput rounds."""
    return throughput["machine_cpu_ms"] * throughput["rps"] / 1000 / (os.cpu_count() or 1)


def print_report(kind: str, report: dict, args) -> None:
    print(f"\n{kind}:")
    print(
        f"  {'server':<16} {'throughput':>12} {'errors':>7} {'CPU/req':>8} {'client':>7} {'db':>7} {'machine':>8} {'busy':>5}"
        f" {'p50 @load':>10} {'p99 @load':>10} {'load':>9}"
        f" {'burst errors':>13} {'burst p99':>10}"
    )
    for label in args.servers:
        throughput, latency, burst = report[label]["throughput"], report[label]["latency"], report[label].get("burst")
        burst_text = f"{burst['errors']:>13} {burst['p99_ms']:>8.0f}ms" if burst else f"{'':>13} {'':>10}"
        print(
            f"  {label:<16} {throughput['rps']:>8.0f} r/s {throughput['errors']:>7} {throughput['server_cpu_ms']:>6.2f}ms "
            f"{throughput['client_cpu_ms']:>5.2f}ms {throughput['database_cpu_ms']:>5.2f}ms {throughput['machine_cpu_ms']:>6.2f}ms "
            f"{_busy_share(throughput):>5.0%} "
            f"{latency['p50_ms']:>8.1f}ms {latency['p99_ms']:>8.1f}ms {latency['rps']:>5.0f} r/s {burst_text}"
        )
    rps = {label: report[label]["throughput"]["rps"] for label in args.servers}
    intake = report.get("webhook intake")

    def ratio_text(numerator: str, denominator: str) -> tuple[float, str]:
        ratios = round_ratios(report, numerator, denominator)
        return statistics.median(ratios), "rounds " + ", ".join(f"{ratio:.2f}" for ratio in ratios)

    interleaved = report.get("interleaved")
    if interleaved:
        print(f"  interleaved, turns of {args.slice:g} s for {args.interleaved:g} s:")
        for label in args.servers:
            turns = interleaved[label]
            print(
                f"    {label:<16} {turns['rps']:>8.0f} r/s {turns['errors']:>7} {turns['server_cpu_ms']:>6.2f}ms "
                f"{turns['database_cpu_ms']:>13.2f}ms  ({turns['turns']} turns)"
            )

    def verdict(ratio: float) -> str:
        return "met" if ratio >= 1.5 else ("minimum met" if ratio >= 1.0 else "NOT met")

    if intake and "hand-written" in rps:
        ratio, rounds = ratio_text("webhook intake", "hand-written")
        if interleaved:
            turns = interleaved["webhook intake"]["rps"] / max(interleaved["hand-written"]["rps"], 1e-9)
            print(f"  intake / hand-written: {turns:.2f} interleaved (goal >= 1.5, at least 1.0: {verdict(turns)});")
            print(f"                         {ratio:.2f} in the rounds' median ({rounds})")
            adjacent = adjacent_turn_ratios(interleaved, "webhook intake", "hand-written")
            if len(adjacent) >= 2:
                low, _, high = statistics.quantiles(adjacent, n=4)
                print(
                    f"                         {statistics.median(adjacent):.2f} in the median of adjacent turns' ratios "
                    f"(middle half {low:.2f}-{high:.2f}, {len(adjacent)} pairs)"
                )
        else:
            print(f"  intake / hand-written: {ratio:.2f}  ({rounds}; goal >= 1.5, at least 1.0: {verdict(ratio)})")
    if intake and "hand-written" in rps:
        mine, theirs = (report[label]["throughput"]["machine_cpu_ms"] for label in ("webhook intake", "hand-written"))
        print(
            f"  machine CPU per request: intake {mine:.2f} ms, hand-written {theirs:.2f} ms "
            f"(hand-written / intake {theirs / max(mine, 1e-9):.2f}: the throughput ratio when both keep the CPUs busy)"
        )
    if intake and intake["throughput"]["commits"]:
        throughput = intake["throughput"]
        print(
            f"  intake's group commit: {throughput['committed_units'] / throughput['commits']:.1f} webhooks per "
            f"transaction in the throughput rounds ({throughput['commits']:.0f} transactions)"
        )
    if intake and "bare Flask 200" in rps:
        ratio, rounds = ratio_text("webhook intake", "bare Flask 200")
        print(f"  intake / bare Flask:   {ratio:.2f}  ({rounds})")
    if "hand-written" in rps and "bare Flask 200" in rps:
        ratio, rounds = ratio_text("hand-written", "bare Flask 200")
        print(f"  hand-written / bare:   {ratio:.2f}  ({rounds})")
    if intake:
        p99 = intake["latency"]["p99_ms"]
        print(f"  intake p99 at {args.rate:.0f} r/s: {p99:.1f} ms  (goal < 50 ms: {'met' if p99 < 50 else 'NOT met'})")
        burst = intake.get("burst")
        if burst:
            met = burst["errors"] == 0 and burst["p99_ms"] < 2000
            print(
                f"  intake burst of {burst['requests']} from {args.burst_connections} connections: "
                f"{burst['errors']} errors, p99 {burst['p99_ms']:.0f} ms  (goal 0 errors, p99 < 2 s: "
                f"{'met' if met else 'NOT met'})"
            )
        runs = [intake["warmup"], *intake["rounds"], intake["latency"], *([burst] if burst else [])]
        answered = sum(run["requests"] - run["errors"] for run in runs)
        if interleaved:
            answered += interleaved["webhook intake"]["answered"]
        prefilled = {"status_events": 0}  # the prefill stores messages only
        counts = {table: count - prefilled.get(table, args.prefill) for table, count in report["counts"].items()}
        print(
            f"  durability: {counts['messages']} messages, {counts['status_events']} status reports, "
            f"{counts['raw_requests']} raw requests, "
            f"{counts['events']} feed events, {counts['request_log']} request log rows in the database for "
            f"{answered} intake requests answered 200"
            + (f" (beyond the {args.prefill} prefilled)" if args.prefill else "")
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--databases", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql")
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--servers", default="bare,hand,intake", help="comma-separated: bare, hand, intake")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="throughput rounds, taking the servers in turn")
    parser.add_argument("--concurrency", type=int, default=16, help="closed-loop clients for throughput")
    parser.add_argument("--interleaved", type=float, default=30.0, help="seconds of interleaved turns (0: none)")
    parser.add_argument("--slice", type=float, default=0.5, help="seconds per turn in the interleaved measurement")
    parser.add_argument("--rate", type=float, default=100.0, help="requests/s for the latency measurement")
    parser.add_argument("--burst", type=int, default=2000, help="requests in the burst (0: none)")
    parser.add_argument("--burst-connections", type=int, default=64, help="connections sending the burst")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (every server)")
    parser.add_argument("--threads", type=int, default=8, help="gunicorn threads per worker (every server)")
    parser.add_argument("--worker-class", default=SERVICE_WORKER, help="gunicorn worker class (every server)")
    parser.add_argument(
        "--prefill", type=int, default=0, help="messages stored before the run (and as many receiver rows)"
    )
    parser.add_argument(
        "--flush-delay-ms",
        type=float,
        default=0.0,
        help="make every disk flush this much longer, as on a cloud volume (SQLite and a private PostgreSQL)",
    )
    parser.add_argument(
        "--webhooks",
        choices=sorted(WEBHOOK_KINDS),
        default="messages",
        help="what the requests are: new inbound messages, or first status reports of outbound ones",
    )
    args = parser.parse_args()
    args.build = WEBHOOK_KINDS[args.webhooks]
    chosen = {part.strip() for part in args.servers.split(",")}
    args.servers = [label for key, label in SHORT_NAMES.items() if key in chosen]

    kinds = [kind.strip() for kind in args.databases.split(",") if kind.strip()]
    with contextlib.ExitStack() as cleanup:
        args.server_environment = {}
        if args.flush_delay_ms > 0:
            args.server_environment = slow_flush_environment(args.flush_delay_ms, cleanup)
            if "postgresql" in kinds:
                args.postgres_url = slow_postgres(args.server_environment, cleanup)
        reports = {kind: run_database(kind, args) for kind in kinds}
    print(
        f"\nwebhook intake benchmark: gunicorn {args.workers} workers x {args.threads} threads "
        f"({args.worker_class.rsplit('.', 1)[-1]}), {args.concurrency} clients, "
        f"{args.duration:.0f} s per measurement, {args.rounds} throughput rounds, {os.cpu_count()} CPUs, "
        f"webhooks: {args.webhooks}"
        + (f", {args.prefill} messages stored before the run" if args.prefill else "")
        + (
            f", every disk flush {args.flush_delay_ms:g} ms longer (bench/slow_flush.c; PostgreSQL in a private "
            "cluster)"
            if args.flush_delay_ms > 0
            else ""
        )
    )
    for kind, report in reports.items():
        print_report(kind, report, args)


if __name__ == "__main__":
    main()
