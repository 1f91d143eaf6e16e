"""Attachment ingestion benchmark: 5 MiB files from a loopback HTTP server through the real worker
(`webhook-service worker`: claim, safe fetch, libmagic sniff, validation, local blob store, database)
against a plain streaming copy of the same files to disk, measured in the same run at the same
concurrency; plus the worker's peak RSS with 1 and with 8 concurrent downloads. The worker runs as the
service runs it, one process per CPU; one row runs it in a single process for comparison.

    .venv/bin/python bench/ingest.py [--files 96] [--size-mib 5] [--repeat 5]

The files are PDFs (the pipeline stores them as they are); a JPEG run is shown separately, since
re-encoding an image is work a plain copy does not do.
Goal (docs/benchmarks.md): throughput ratio >= 0.7 in every run; peak RSS grows with concurrency, not
with file count. The printed verdict judges the median of the pairs' ratios; the range is shown beside it.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import multiprocessing
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.support import free_port, noise_jpeg, peak_rss_kib_tree, random_pdf
from webhook_service.worker.supervisor import split_threads

TENANT = "00000000-0000-0000-0000-000000000000"


def sample(kind: str, size: int) -> bytes:
    """A PDF of exactly `size` bytes, or a photographic JPEG just under `size`."""
    return random_pdf(size) if kind == "pdf" else noise_jpeg(size, quality=85)


def serve_files(port: int, body: bytes, content_type: str, ready) -> None:
    """The media server, in its own process so it does not compete for the benchmark's GIL."""
    chunk = 64 * 1024

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            view = memoryview(body)
            for start in range(0, len(body), chunk):
                self.wfile.write(view[start : start + chunk])

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    ready.set()
    server.serve_forever()


def plain_copy(port: int, paths: list[str], target: Path, concurrency: int) -> float:
    """The baseline: stream each file to disk with hashing and an fsync, in reads of the worker's own
    size (like for like), nothing else. Returns seconds."""
    from webhook_service.media.fetcher import CHUNK_SIZE as CHUNK

    def copy(path: str) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("GET", path)
        response = connection.getresponse()
        digest = hashlib.sha256()
        with open(target / path.strip("/").replace("/", "_"), "wb") as sink:
            while chunk := response.read(CHUNK):
                digest.update(chunk)
                sink.write(chunk)
            sink.flush()
            os.fsync(sink.fileno())
        connection.close()

    target.mkdir(parents=True, exist_ok=True)
    os.sync()  # start from a disk with nothing left to write back, as the worker run does
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(copy, paths))
    return time.perf_counter() - started


def worker_run(
    work: Path, port: int, paths: list[str], threads: int, content_type: str, processes: int | None = None
) -> tuple[float, int]:
    """Store `paths` as one inbound message's attachments each, enqueue them, and time the real
    worker (`threads` downloads at once, over `processes` processes; None: the service's default of
    one per CPU) until every one is stored. Returns (seconds, peak RSS in KiB of all its processes).

    One extra file goes first, untimed: the clock starts with a worker that is already polling its
    queue, so what is measured is throughput, not the consumer's start-up or its idle poll interval."""
    from webhook_service.database.migrate import migrate
    from webhook_service.intake.message_store import RawRequestRecord, store_webhook
    from webhook_service.model.events import MediaRef, MessageEvent
    from webhook_service.runtime import Runtime
    from webhook_service.settings import load_settings

    data = work / "data"
    config = work / "worker.toml"
    config.write_text(f"""
data_dir = "{data}"
log_level = "INFO"
[queue]
worker_threads = {threads}
{f"worker_processes = {processes}" if processes else ""}
[media.fetch]
allow_http = true
allow_private_networks = ["127.0.0.1/32"]
[[tenants]]
id = "{TENANT}"
[[connections]]
provider = "standard"
name = "bench"
tenant = "{TENANT}"
secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
""")
    env = dict(os.environ, WEBHOOK_SERVICE_CONFIG=str(config), PYTHONPATH=str(ROOT))
    settings = load_settings(config, environ={})
    migrate(settings.effective_database_url)
    runtime = Runtime(settings)
    connection = settings.connections[0]
    attachment_ids = []
    for index, path in enumerate([paths[0] + "-warmup", *paths]):
        raw = RawRequestRecord(
            "bench", "POST", "http://bench/webhooks/standard/bench", [], b"{}", None, datetime.now(UTC)
        )
        event = MessageEvent(
            f"ingest-{index}",
            "inbound",
            "+15550001111",
            ("+15551234567",),
            media=(MediaRef(f"http://127.0.0.1:{port}{path}", content_type),),
        )
        attachment_ids += store_webhook(runtime.db, connection, raw, [event], "US").new_attachment_ids
    database = data / "service.db"

    def wait_until_done(count: int) -> None:
        while True:
            with sqlite3.connect(database) as db:
                done = db.execute("select count(*) from attachments where status != 'pending'").fetchone()[0]
            if done >= count:
                return
            if worker.poll() is not None:
                raise SystemExit("the worker exited")
            time.sleep(0.01)

    worker = subprocess.Popen(
        [sys.executable, "-m", "webhook_service.cli", "worker"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Every consumer process says it started (they share the supervisor's stderr).
        started_processes = len(split_threads(threads, processes))
        _wait_for_line(worker, "consumer started", times=started_processes)
        runtime.queue.enqueue(attachment_ids[:1])
        wait_until_done(1)
        os.sync()  # start from a disk with nothing left to write back, as the plain copy does
        started = time.perf_counter()
        runtime.queue.enqueue(attachment_ids[1:])
        wait_until_done(len(attachment_ids))
        elapsed = time.perf_counter() - started
        with sqlite3.connect(database) as db:
            outcomes = dict(db.execute("select status, count(*) from attachments group by status").fetchall())
        if outcomes != {"stored": len(attachment_ids)}:
            raise SystemExit(f"not everything was stored: {outcomes}")
        peak = peak_rss_kib_tree(worker.pid)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        runtime.close()
    return elapsed, peak


def _wait_for_line(process: subprocess.Popen, needle: str, timeout: float = 60, times: int = 1) -> None:
    found = threading.Event()

    def read():
        seen = 0
        for line in process.stderr:
            if needle.lower() in line.lower():
                seen += 1
                if seen >= times:
                    found.set()
        found.set()

    threading.Thread(target=read, daemon=True).start()
    if not found.wait(timeout) or process.poll() is not None:
        raise SystemExit("the worker did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=96)
    parser.add_argument("--size-mib", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=8, help="downloads at once, both sides")
    parser.add_argument(
        "--repeat", type=int, default=5, help="baseline and worker alternate this many times; medians are reported"
    )
    args = parser.parse_args()
    size = int(args.size_mib * 1024 * 1024)
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    half = max(1, args.files // 2)
    # (file type, files, concurrent downloads, worker processes; None: the service's default): the PDF
    # runs compare concurrency, file count and one process against the default at once.
    plan = [
        ("pdf", args.files, args.concurrency, None),
        ("pdf", half, args.concurrency, None),
        ("pdf", half, 1, None),
        ("pdf", args.files, args.concurrency, 1),
        ("jpeg", max(args.concurrency, args.files // 8), args.concurrency, None),
    ]
    rows = []
    try:
        for kind in ("pdf", "jpeg"):
            content_type = "application/pdf" if kind == "pdf" else "image/jpeg"
            body = sample(kind, size)
            port = free_port()
            ready = multiprocessing.Event()
            server = multiprocessing.Process(target=serve_files, args=(port, body, content_type, ready), daemon=True)
            server.start()
            ready.wait(10)
            try:
                for run, (run_kind, count, concurrency, processes) in enumerate(plan):
                    if run_kind != kind:
                        continue
                    # Disk writeback makes single runs noisy: the two sides take turns, several times.
                    baselines, workers, peaks = [], [], []
                    for attempt in range(args.repeat):
                        paths = [f"/{kind}/{run}/{attempt}/{index}" for index in range(count)]
                        copy_dir = work / f"copy-{run}-{attempt}"
                        baselines.append(plain_copy(port, paths, copy_dir, concurrency))
                        shutil.rmtree(copy_dir)
                        run_dir = work / f"run-{run}-{attempt}"
                        run_dir.mkdir()
                        seconds, peak = worker_run(run_dir, port, paths, concurrency, content_type, processes)
                        shutil.rmtree(run_dir, ignore_errors=True)  # SQLite may still be removing its -shm file
                        workers.append(seconds)
                        peaks.append(peak)
                    ratios = sorted(b / w for b, w in zip(baselines, workers, strict=False))
                    rows.append(
                        (
                            kind,
                            len(body),
                            count,
                            concurrency,
                            processes,
                            statistics.median(baselines),
                            statistics.median(workers),
                            max(peaks),
                            ratios,
                        )
                    )
            finally:
                server.terminate()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    mib = 1024 * 1024
    print(
        f"\nattachment ingestion benchmark: {os.cpu_count()} CPUs, loopback HTTP, local blob store, SQLite; "
        f"medians of {args.repeat} alternating runs; a ratio is the median of the ratios of each copy run to "
        f"the worker run right after it (the disk's speed drifts between runs, so pairs compare like with like)"
    )
    print(
        f"{'type':<5} {'file':>8} {'files':>5} {'conc':>4} {'procs':>5} {'plain copy':>12} {'worker':>12} "
        f"{'ratio':>6} {'ratio range':>12} {'worker peak RSS':>16}"
    )
    for kind, length, count, concurrency, processes, baseline, seconds, peak, ratios in rows:
        plain_rate = count * length / mib / baseline
        worker_rate = count * length / mib / seconds
        shown_processes = len(split_threads(concurrency, processes))
        print(
            f"{kind:<5} {length / mib:>6.2f}Mi {count:>5} {concurrency:>4} {shown_processes:>5} "
            f"{plain_rate:>8.1f} MiB/s {worker_rate:>8.1f} MiB/s {statistics.median(ratios):>6.2f} "
            f"{ratios[0]:>5.2f}-{ratios[-1]:<5.2f} {peak / 1024:>12.1f} MiB"
        )
    main_run, half_run, single_run, one_process_run = rows[0], rows[1], rows[2], rows[3]
    ratio = statistics.median(main_run[8])
    print(
        f"\nPDF throughput ratio at concurrency {args.concurrency} (worker / plain copy): {ratio:.2f} "
        f"(goal >= 0.70: {'met' if ratio >= 0.7 else 'NOT met'}); "
        f"the same worker in one process: {statistics.median(one_process_run[8]):.2f}"
    )
    print(
        f"worker peak RSS, all its processes added up: {single_run[7] / 1024:.1f} MiB with 1 download at a "
        f"time; with {args.concurrency}: {half_run[7] / 1024:.1f} MiB for {half_run[2]} files, "
        f"{main_run[7] / 1024:.1f} MiB for {main_run[2]} files ({one_process_run[7] / 1024:.1f} MiB in one process)"
    )


if __name__ == "__main__":
    main()
