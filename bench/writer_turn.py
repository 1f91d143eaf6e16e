"""How long SQLite's writer turn lasts while the process's other threads are busy, by how many statements
it runs: the reason the group commit inserts a batch's rows with one multi-row INSERT per table instead
of an executemany (one statement run per row) or a statement per webhook (docs/architecture.md).

Each sqlite3 statement lets go of the GIL while SQLite works and then waits to take it back from
whichever thread took it meanwhile; a thread busy in Python gives it up only when the switch interval
(5 ms by default) runs out. In a web worker the other threads are busy with requests, and every other
process waits for the turn. Here `--busy` threads spin in Python while the main thread runs turns of
`--rows` rows each (BEGIN IMMEDIATE, the inserts, COMMIT, with synchronous=FULL as the service), the
rows of a webhook-like table with an index, in two ways alternately:

- one statement per row (`executemany`);
- one multi-row INSERT (`PreparedStatement.run_many` on SQLite).

    .venv/bin/python bench/writer_turn.py [--busy 3] [--rows 4] [--turns 200] [--switch-interval S]

It prints each way's wall time and CPU per turn and their ratio; with no busy thread (`--busy 0`) the
two differ by SQLite's own work only.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

COLUMNS = ("request_id", "headers", "body", "url", "provider")
INSERT = f"INSERT INTO requests ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"


def rows(turn: int, count: int) -> list[tuple]:
    headers = json.dumps([["Content-Type", "application/json"], ["Webhook-Id", f"msg_{turn}"]])
    return [
        (f"req-{turn}-{n}", headers, b"x" * 300, "https://hooks.example/webhooks/standard/main", "standard")
        for n in range(count)
    ]


def turn_one_per_row(database: sqlite3.Connection, values: list[tuple]) -> None:
    database.executemany(INSERT, values)


def turn_multi_row(database: sqlite3.Connection, values: list[tuple]) -> None:
    group = "(" + ", ".join("?" * len(COLUMNS)) + ")"
    sql = f"INSERT INTO requests ({', '.join(COLUMNS)}) VALUES " + ", ".join([group] * len(values))
    database.execute(sql, [value for row in values for value in row])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--busy", type=int, default=3, help="threads spinning in Python meanwhile")
    parser.add_argument("--rows", type=int, default=4, help="rows per turn (a batch's webhooks)")
    parser.add_argument("--turns", type=int, default=200, help="turns per way and round (2 rounds)")
    parser.add_argument("--switch-interval", type=float, default=None, help="sys.setswitchinterval, in s")
    args = parser.parse_args()
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)

    path = Path(tempfile.mkdtemp(prefix="bench-writer-turn-")) / "turns.db"
    database = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    database.execute("PRAGMA journal_mode=WAL")
    database.execute("PRAGMA synchronous=FULL")
    database.execute(
        "CREATE TABLE requests (id INTEGER PRIMARY KEY, request_id TEXT, headers TEXT, body BLOB, url TEXT,"
        " provider TEXT)"
    )
    database.execute("CREATE INDEX ix_requests_request_id ON requests (request_id)")

    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            total = 0
            for number in range(2000):
                total += number

    spinners = [threading.Thread(target=spin, daemon=True) for _ in range(args.busy)]
    for spinner in spinners:
        spinner.start()
    ways = {"one statement per row": turn_one_per_row, "one multi-row INSERT": turn_multi_row}
    walls: dict[str, list[float]] = {name: [] for name in ways}
    cpus: dict[str, list[float]] = {name: [] for name in ways}
    turn = 0
    try:
        for _round in range(2):
            for name, way in ways.items():
                for _ in range(args.turns):
                    turn += 1
                    values = rows(turn, args.rows)
                    started, cpu = time.perf_counter(), time.thread_time()
                    database.execute("BEGIN IMMEDIATE")
                    way(database, values)
                    database.execute("COMMIT")
                    walls[name].append(time.perf_counter() - started)
                    cpus[name].append(time.thread_time() - cpu)
    finally:
        stop.set()
        for spinner in spinners:
            spinner.join()
        database.close()

    print(
        f"\nSQLite writer turn, {args.rows} rows a turn, {args.busy} busy threads, {args.turns * 2} turns each, "
        f"switch interval {sys.getswitchinterval() * 1000:g} ms (ms)"
    )
    means = {}
    for name in ways:
        means[name] = statistics.mean(walls[name]) * 1000
        print(
            f"  {name:<22} wall {means[name]:8.2f}  (p50 {statistics.median(walls[name]) * 1000:7.2f})"
            f"  CPU {statistics.mean(cpus[name]) * 1000:6.3f}"
        )
    ratio = means["one statement per row"] / means["one multi-row INSERT"]
    print(f"  per-row turn / multi-row turn: {ratio:.2f}")


if __name__ == "__main__":
    main()
