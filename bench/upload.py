"""Upload API benchmark: POST /api/v1/media under gunicorn on the embedded defaults (SQLite, local blob
store; the service's own gunicorn settings, 2 workers x 8 threads), one upload at a time over a
keep-alive connection, in each request form a client may use:

- base64: seed 001's JSON with `data` as a base64 string (what C# sends; seed 000's `content` alike);
- bytes: seed 001's JSON with `data` as an array of byte values, as Python's json.dumps writes it;
- multipart: multipart/form-data with a `file` part (curl -F).

    .venv/bin/python bench/upload.py [--repeat 5] [--size-mib 5]

The main file is a PDF of exactly the limit, stored as it is, so the numbers measure the upload path
(parse, decode, sniff, hash, store, record); a 4.9 MiB photographic JPEG run adds what re-encoding an
image costs. Each form runs in a fresh gunicorn; peak RSS is the largest VmHWM among its workers, and
"idle" is the same after one small warm-up upload. Goal (docs/benchmarks.md): a 5 MiB base64 upload
validated and stored in well under a second.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.support import free_port, noise_jpeg, peak_rss_kib, random_pdf

# The development defaults (config.py): the seeds' tenant, number and credentials.
TENANT = "00000000-0000-0000-0000-000000000000"
NUMBER = "+15551234567"
AUTHORIZATION = "Basic " + base64.b64encode(b"your-email@example.com:your-password").decode()
BOUNDARY = "bench-upload-boundary-7d1f0c"
FORMS = ("base64", "bytes", "multipart")
MIB = 1024 * 1024


def request_body(form: str, data: bytes, file_name: str, content_type: str) -> tuple[bytes, str]:
    """(body, Content-Type) of one upload in `form`."""
    fields = {"phoneNumber": NUMBER, "fileName": file_name, "contentType": content_type, "tenantId": TENANT}
    if form == "base64":
        return json.dumps({**fields, "data": base64.b64encode(data).decode()}).encode(), "application/json"
    if form == "bytes":
        # As requests' json= writes it: ", " between the values (about 4.6 characters a byte).
        array = ", ".join(map(str, data)).encode()
        head = json.dumps({**fields, "data": []}).encode()[:-3]  # everything before the empty array's "[]}"
        return head + b"[" + array + b"]}", "application/json"
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
        if name != "fileName"
    ]
    parts.append(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{file_name}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n".encode()
        + data
        + b"\r\n"
    )
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode(), f"multipart/form-data; boundary={BOUNDARY}"


def start_service(work: Path, label: str) -> tuple[subprocess.Popen, int]:
    data = work / f"data-{label}"
    config = work / f"{label}.toml"
    config.write_text(f'data_dir = "{data}"\nlog_level = "WARNING"\n')
    port = free_port()
    env = dict(os.environ, WEBHOOK_SERVICE_CONFIG=str(config), PYTHONPATH=str(ROOT), PORT=str(port))
    from webhook_service.cli.web import GUNICORN_COMMAND
    from webhook_service.database.migrate import migrate
    from webhook_service.settings import load_settings

    migrate(load_settings(config, environ={}).effective_database_url)
    process = subprocess.Popen(
        GUNICORN_COMMAND, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=(work / f"{label}.log").open("wb")
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"gunicorn exited; see {work / f'{label}.log'}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process, port
        except OSError:
            time.sleep(0.1)
    raise SystemExit("gunicorn did not start listening")


def worker_pids(master: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == master:
                pids.append(int(entry.name))
    return pids


def peak_rss_mib(pids: list[int]) -> float:
    return max(peak_rss_kib(pid) for pid in pids) / 1024


def post(connection: http.client.HTTPConnection, body: bytes, content_type: str) -> dict:
    connection.request(
        "POST", "/api/v1/media", body=body, headers={"Content-Type": content_type, "Authorization": AUTHORIZATION}
    )
    response = connection.getresponse()
    answer = json.loads(response.read())
    if response.status != 201:
        raise SystemExit(f"upload refused: {response.status} {answer}")
    return answer


def run(work: Path, form: str, label: str, data: bytes, file_name: str, content_type: str, repeat: int) -> dict:
    body, body_type = request_body(form, data, file_name, content_type)
    warm_up, warm_up_type = request_body(form, random_pdf(1024), "warm-up.pdf", "application/pdf")
    process, port = start_service(work, f"{label}-{form}")
    try:
        # One keep-alive connection: every request goes to the same worker.
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        pids = worker_pids(process.pid)
        post(connection, warm_up, warm_up_type)  # imports, database and blob store connections
        idle = peak_rss_mib(pids)
        seconds = []
        for _ in range(repeat):
            started = time.perf_counter()
            answer = post(connection, body, body_type)
            seconds.append(time.perf_counter() - started)
        connection.close()
        return {
            "form": form,
            "label": label,
            "file": len(data),
            "stored": answer["size"],
            "stored_type": answer["contentType"],
            "body": len(body),
            "median": statistics.median(seconds),
            "max": max(seconds),
            "idle": idle,
            "peak": peak_rss_mib(pids),
        }
    finally:
        process.terminate()
        process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5, help="timed uploads per form")
    parser.add_argument("--size-mib", type=float, default=5.0, help="size of the PDF (the media limit is 5 MiB)")
    args = parser.parse_args()
    document = random_pdf(int(args.size_mib * MIB))
    photo = noise_jpeg(int(4.9 * MIB), quality=90)  # the policy's quality
    work = Path(tempfile.mkdtemp(prefix="bench-upload-"))
    rows = []
    try:
        rows += [run(work, form, "pdf", document, "document.pdf", "application/pdf", args.repeat) for form in FORMS]
        rows += [run(work, form, "jpeg", photo, "photo.jpg", "image/jpeg", args.repeat) for form in FORMS]
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"\nupload API benchmark: gunicorn (service defaults: 2 workers x 8 threads), SQLite, local blob store, "
        f"{os.cpu_count()} CPUs, {args.repeat} sequential uploads per row"
    )
    print(f"{'file':<14} {'form':<10} {'request':>10} {'median':>8} {'max':>8} {'idle RSS':>9} {'peak RSS':>9}  stored")
    for row in rows:
        print(
            f"{row['label'] + ' ' + format(row['file'] / MIB, '.2f') + ' MiB':<14} {row['form']:<10} "
            f"{row['body'] / MIB:>6.1f} MiB {row['median']:>7.3f}s {row['max']:>7.3f}s "
            f"{row['idle']:>5.0f} MiB {row['peak']:>5.0f} MiB  {row['stored'] / MIB:.2f} MiB {row['stored_type']}"
        )
    base64_pdf = next(row for row in rows if row["form"] == "base64" and row["label"] == "pdf")
    met = base64_pdf["max"] < 1.0
    print(
        f"\n5 MiB base64 upload: median {base64_pdf['median']:.3f} s, max {base64_pdf['max']:.3f} s "
        f"(goal: well under a second: {'met' if met else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
