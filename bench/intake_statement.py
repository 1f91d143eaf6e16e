"""PostgreSQL's own CPU for the intake's one statement per batch, by batch size and by form, beside the
hand-written receiver's insert and commit of one webhook (bench/peer_app.py).

    .venv/bin/python bench/intake_statement.py [--postgres-url URL] [--statements 2000] [--sizes 1,3,8]
                                               [--webhooks messages|reports]

- `messages` (intake/postgres_batch.py): new inbound messages, with the attachments' insert and without
  it (what a batch with no attachments runs).
- `reports` (intake/postgres_reports.py): status reports, each of a message not seen before (the
  statement inserts its placeholder: the benchmark's `--webhooks reports`), and each of a message that is
  there (a later report, which moves its status on). The statement has both parts, and for each report
  one of them finds nothing to do.

Why: under gunicorn most batches hold two to four webhooks, and a statement costs the server a fixed
part (its round trip, opening each table and its indexes, the commit's flush) besides each webhook's
rows; this shows the two apart. The documents are one webhook's, as the intake encodes it (captured from
a request through the real app), with only its ids changed, so that every message (or report) is new.
Each statement runs as the service runs it alone in its batch: in autocommit, through the same
`PreparedStatement`. The CPU is the server process's own (its backend's time on a CPU, to the
nanosecond, from /proc), so PostgreSQL must run on this machine. The forms and the receiver take turns
of 50 statements, so that a machine whose speed drifts slows each alike.
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

from bench.intake import SECRET, BenchDatabase, build_requests, build_status_reports
from bench.intake_phases import Caller

# The captured webhooks' keys, replaced in each statement's documents by new ones.
PROVIDER_MESSAGE_ID = "statement-bench-0"
# Statements of each form run in turns of this many, so that a machine whose speed drifts slows each alike.
BLOCK = 50


def backend_cpu_seconds(pid: int) -> float:
    """The process's time on a CPU, to the nanosecond (/proc/<pid>/stat counts in 10 ms ticks)."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9


def captured_documents(database: BenchDatabase, kind: str) -> list[str]:
    """The documents the intake hands its batch's statement for one new message (`messages`), or for a
    message's first status report and then its next (`reports`)."""
    os.environ.update(WEBHOOK_SERVICE_CONFIG=str(database.service_config()))
    from webhook_service.observability.metrics_sharing import WEB, share_metrics
    from webhook_service.settings import load_settings

    settings = load_settings()
    # Before anything imports prometheus_client (the app does).
    share_metrics(settings.data_dir, WEB).mkdir(parents=True, exist_ok=True)
    from webhook_service.app import create_app
    from webhook_service.intake import message_store
    from webhook_service.runtime import Runtime

    prefix = PROVIDER_MESSAGE_ID.rsplit("-", 1)[0]
    name = "insert_webhooks" if kind == "messages" else "insert_reports"
    requests = (
        build_requests(1, prefix)
        if kind == "messages"
        else [*build_status_reports(1, prefix, "sent"), *build_status_reports(1, prefix, "delivered")]
    )
    documents: list[bytes] = []
    insert = getattr(message_store, name)

    def capture(connection, webhooks):
        documents.extend(webhook.document for webhook in webhooks)
        return insert(connection, webhooks)

    setattr(message_store, name, capture)
    runtime = Runtime(settings)
    try:
        call = Caller(create_app(runtime=runtime), "/webhooks/standard/bench")
        for request in requests:
            call(*request)
    finally:
        setattr(message_store, name, insert)
        runtime.db.dispose()
    assert len(documents) == len(requests), "a webhook did not reach the batch's statement"
    return [document.decode() for document in documents]


def templates(documents: list[str], kind: str) -> list[str]:
    """The documents with their keys as `{key}` (the message's), `{id}` (its id) and `{dedupe}` (a
    report's dedupe key), to be filled with new ones."""
    result = []
    for document in documents:
        parsed = json.loads(document)
        if kind == "messages":
            message_id = parsed["messages"][0]["id"]
            template = document.replace(message_id, "{id}")
        else:
            report = parsed["reports"][0]
            template = document.replace(report["placeholder"]["id"], "{id}").replace(
                report["report"]["dedupe_key"], "{dedupe}"
            )
        template = template.replace(PROVIDER_MESSAGE_ID, "{key}")
        assert "{key}" in template and "{id}" in template
        result.append(template)
    return result


def filled(template: str, key: str) -> str:
    return template.replace("{key}", key).replace("{id}", str(uuid.uuid4())).replace("{dedupe}", uuid.uuid4().hex)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--statements", type=int, default=2000, help="per measurement")
    parser.add_argument("--sizes", default="1,3,8", help="webhooks per statement")
    parser.add_argument("--webhooks", choices=("messages", "reports"), default="messages")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]

    work = Path(tempfile.mkdtemp(prefix="bench-statement-"))
    database = BenchDatabase("postgresql", work, args.postgres_url)
    try:
        database.prepare()
        os.environ.update(PEER_SECRET=SECRET, PEER_DATABASE=database.peer_database)
        first, *later = templates(captured_documents(database, args.webhooks), args.webhooks)

        import psycopg

        from bench.peer_app import POSTGRES_INSERT
        from webhook_service.database import feed
        from webhook_service.database.engine import make_engine
        from webhook_service.database.prepared import PreparedStatement
        from webhook_service.intake import postgres_batch, postgres_reports

        # Per form: its statement, and what it runs on a batch's keys before the measured run (unmeasured).
        forms: dict[str, tuple[PreparedStatement, str, str | None]]
        if args.webhooks == "messages":
            forms = {
                "whole": (postgres_batch.INSERT_WEBHOOKS, first, None),
                "without attachments": (postgres_batch.INSERT_WEBHOOKS_WITHOUT_ATTACHMENTS, first, None),
            }
        else:
            (next_report,) = later
            forms = {
                "first reports": (postgres_reports.INSERT_REPORTS, first, None),
                "later reports": (postgres_reports.INSERT_REPORTS, next_report, first),
            }
        engine = make_engine(database.service_url).execution_options(isolation_level="AUTOCOMMIT")
        peer = psycopg.connect(database.peer_database)
        peer_pid = peer.info.backend_pid
        spent: dict[tuple[str, int], float] = defaultdict(float)
        runs: dict[tuple[str, int], int] = defaultdict(int)
        with engine.connect() as connection:
            pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()

            def statement_values(template: str, keys: list[str]) -> dict:
                # As run_batch passes them (postgres_batch.json_parameter).
                documents = "[" + ",".join(filled(template, key) for key in keys) + "]"
                latencies = json.dumps([1.0] * len(keys))
                return {
                    "webhooks": postgres_batch.json_parameter(documents.encode()),
                    "latencies": postgres_batch.json_parameter(latencies.encode()),
                    **feed.bound_parameters(connection),
                }

            def run(statement: PreparedStatement, values: dict) -> None:
                returned = statement.run(connection, values)
                # Every message or report of the batch stored (the first value is the statement's count).
                assert returned is not None and returned[0] == len(json.loads(values["webhooks"].obj))

            for size in sizes:
                for _block in range(max(args.statements // BLOCK, 1)):
                    for form, (statement, template, before_it) in forms.items():
                        batches = [[f"statement-{uuid.uuid4().hex}" for _ in range(size)] for _ in range(BLOCK)]
                        if before_it is not None:
                            for keys in batches:
                                run(statement, statement_values(before_it, keys))
                        values = [statement_values(template, keys) for keys in batches]
                        before = backend_cpu_seconds(pid)
                        for each in values:
                            run(statement, each)
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
            f"\nPostgreSQL's CPU per statement ({args.webhooks}), {args.statements} statements of each "
            f"({BLOCK} at a time in turns; ms)"
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
