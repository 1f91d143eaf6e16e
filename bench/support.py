"""What the benchmarks share: a free loopback port, sample files, and a process's peak memory."""

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
