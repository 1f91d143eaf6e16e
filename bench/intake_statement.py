"""PostgreSQL's own CPU for the intake's one statement per batch of new messages (intake/postgres_batch.py),
by batch size and by form (with the attachments' insert, and without it, which a batch with no
attachments runs), beside the hand-written receiver's insert and commit of one webhook (bench/peer_app.py).

    .venv/bin/python bench/intake_statement.py [--postgres-url URL] [--statements 2000] [--sizes 1,3,8]

Why: under gunicorn most batches hold two to four webhooks, and a statement costs the server a fixed
part (its round trip, opening each table and its indexes, the commit's flush) besides each webhook's
rows; this shows the two apart. The documents are one webhook's, as the intake encodes it (captured from
a request through the real app), with only its ids changed, so that every message is new. Each
statement runs as the service runs it alone in its batch: in autocommit, through the same
`PreparedStatement`. The CPU is the server process's own (its backend's time on a CPU, to the
nanosecond, from /proc), so PostgreSQL must run on this machine. The forms and the
receiver take turns of 50 statements, so that a machine whose speed drifts slows each alike.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import uuid
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.intake import SECRET, BenchDatabase, build_requests
from bench.intake_phases import Caller

PROVIDER_MESSAGE_ID = "statement-bench-0"
# Statements of each form run in turns of this many, so that a machine whose speed drifts slows each alike.
BLOCK = 50


def backend_cpu_seconds(pid: int) -> float:
    """The process's time on a CPU, to the nanosecond (/proc/<pid>/stat counts in 10 ms ticks)."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9


def captured_document(database: BenchDatabase) -> str:
    """One webhook's document, as the intake hands it to the batch's statement."""
    os.environ.update(WEBHOOK_SERVICE_CONFIG=str(database.service_config()))
    from webhook_service.observability.metrics_sharing import WEB, share_metrics
    from webhook_service.settings import load_settings

    settings = load_settings()
    # Before anything imports prometheus_client (the app does).
    share_metrics(settings.data_dir, WEB).mkdir(parents=True, exist_ok=True)
    from webhook_service.app import create_app
    from webhook_service.intake import message_store
    from webhook_service.runtime import Runtime

    documents: list[bytes] = []
    insert = message_store.insert_webhooks

    def capture(connection, webhooks):
        documents.extend(webhook.document for webhook in webhooks)
        return insert(connection, webhooks)

    message_store.insert_webhooks = capture  # type: ignore[assignment]
    runtime = Runtime(settings)
    try:
        Caller(create_app(runtime=runtime), "/webhooks/standard/bench")(
            *build_requests(1, PROVIDER_MESSAGE_ID.rsplit("-", 1)[0])[0]
        )
    finally:
        message_store.insert_webhooks = insert  # type: ignore[assignment]
        runtime.db.dispose()
    (document,) = documents
    return document.decode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--statements", type=int, default=2000, help="per measurement")
    parser.add_argument("--sizes", default="1,3,8", help="webhooks per statement")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]

    work = Path(tempfile.mkdtemp(prefix="bench-statement-"))
    database = BenchDatabase("postgresql", work, args.postgres_url)
    try:
        database.prepare()
        os.environ.update(PEER_SECRET=SECRET, PEER_DATABASE=database.peer_database)
        document = captured_document(database)
        message_id = json.loads(document)["messages"][0]["id"]
        template = document.replace(PROVIDER_MESSAGE_ID, "{provider_message_id}").replace(message_id, "{message_id}")
        assert template.count("{message_id}") >= 2 and "{provider_message_id}" in template

        import psycopg
        from psycopg.types.json import Jsonb

        from bench.peer_app import POSTGRES_INSERT
        from webhook_service.database.engine import make_engine
        from webhook_service.database.feed import FEED_LOCK_KEY
        from webhook_service.intake import postgres_batch

        forms = {
            "whole": postgres_batch.INSERT_WEBHOOKS,
            "without attachments": postgres_batch.INSERT_WEBHOOKS_WITHOUT_ATTACHMENTS,
        }
        engine = make_engine(database.service_url).execution_options(isolation_level="AUTOCOMMIT")
        peer = psycopg.connect(database.peer_database)
        peer_pid = peer.info.backend_pid
        spent: dict[tuple[str, int], float] = defaultdict(float)
        runs: dict[tuple[str, int], int] = defaultdict(int)
        with engine.connect() as connection:
            pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()

            def documents(size: int) -> Jsonb:
                # As run_batch passes them (postgres_batch.json_parameter).
                return postgres_batch.json_parameter(
                    (
                        "["
                        + ",".join(
                            template.replace("{provider_message_id}", f"statement-{uuid.uuid4().hex}").replace(
                                "{message_id}", str(uuid.uuid4())
                            )
                            for _ in range(size)
                        )
                        + "]"
                    ).encode()
                )

            for size in sizes:
                latencies = postgres_batch.json_parameter(json.dumps([1.0] * size).encode())
                for _block in range(max(args.statements // BLOCK, 1)):
                    for form, statement in forms.items():
                        batches = [documents(size) for _ in range(BLOCK)]
                        before = backend_cpu_seconds(pid)
                        for webhooks in batches:
                            statement.run(
                                connection, {"webhooks": webhooks, "latencies": latencies, "feed_lock": FEED_LOCK_KEY}
                            )
                        spent[form, size] += backend_cpu_seconds(pid) - before
                        runs[form, size] += BLOCK
                    rows = [
                        (f"peer-{uuid.uuid4().hex}", "pm", "+15550001111", '["+15551234567"]', "text")
                        for _ in range(BLOCK)
                    ]
                    before = backend_cpu_seconds(peer_pid)
                    for row in rows:
                        peer.execute(POSTGRES_INSERT, row)
                        peer.commit()
                    spent["hand-written", 1] += backend_cpu_seconds(peer_pid) - before
                    runs["hand-written", 1] += BLOCK
        peer.close()
        engine.dispose()

        print(
            f"\nPostgreSQL's CPU per statement, {args.statements} statements of each ({BLOCK} at a time in turns; ms)"
        )
        print(f"  {'statement':<22} {'webhooks':>8} {'per statement':>14} {'per webhook':>12}")
        for (form, size), seconds in sorted(spent.items(), key=lambda item: (item[0][0] == "hand-written", item[0][1])):
            per_statement = 1000 * seconds / runs[form, size]
            print(f"  {form:<22} {size:>8} {per_statement:>14.3f} {per_statement / size:>12.3f}")
        print("  (hand-written: its INSERT and COMMIT for one webhook, as bench/peer_app.py runs them)")
    finally:
        database.drop()


if __name__ == "__main__":
    main()
