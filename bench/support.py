"""What the benchmarks share: a free loopback port, sample files, a process's peak memory and CPU, and the
machine's CPU."""

from __future__ import annotations

import io
import os
import random
import socket
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def random_pdf(size: int) -> bytes:
    """A PDF of exactly `size` bytes whose body is random bytes, as the compressed streams of a real PDF
    are (a text-like body would make libmagic's encoding check look slower than it is on documents)."""
    head = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\nstream\n"
    tail = b"\nendstream\ntrailer << /Root 1 0 R >>\n%%EOF\n"
    return head + random.Random(size).randbytes(size - len(head) - len(tail)) + tail


def noise_jpeg(size: int, quality: int) -> bytes:
    """The largest photo-like (noise, incompressible) square JPEG at `quality` that fits in `size`."""
    from PIL import Image

    low, high, best = 256, 4096, b""
    while low <= high:
        side = (low + high) // 2
        buffer = io.BytesIO()
        Image.frombytes("RGB", (side, side), random.Random(side).randbytes(side * side * 3)).save(
            buffer, "JPEG", quality=quality
        )
        if buffer.tell() <= size:
            best, low = buffer.getvalue(), side + 1
        else:
            high = side - 1
    return best


def peak_rss_kib_tree(pid: int) -> int:
    """Peak resident memory of a process and its children, added up (an upper bound of their peak
    together, since each may have peaked at another moment)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return peak_rss_kib(pid) + sum(peak_rss_kib_tree(int(child)) for child in children)


def peak_rss_kib(pid: int) -> int:
    """The process's peak resident memory so far (VmHWM), 0 when it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def cpu_seconds_tree(pid: int) -> float:
    """CPU time (user + system) used so far by a process and its living children, added up."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # utime and stime are fields 14 and 15 of /proc/<pid>/stat, in clock ticks.
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(cpu_seconds_tree(int(child)) for child in children)


def cpu_seconds_named(name: str) -> float:
    """CPU time used so far by every living process whose command is `name` (a local PostgreSQL server's
    postmaster and backends are all "postgres"). A process that exits between two readings takes its
    share with it, so measure over connections that stay open."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            head, _, tail = (entry / "stat").read_text().rpartition(")")
        except OSError:
            continue
        if head.partition("(")[2] == name:
            fields = tail.split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU time the whole machine has spent busy so far (every CPU's user, nice, system, irq and softirq
    time, from /proc/stat), whoever spent it: servers, database, clients, kernel."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu "):
            user, nice, system, _idle, _iowait, irq, softirq, steal = (int(value) for value in line.split()[1:9])
            return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    return 0.0
