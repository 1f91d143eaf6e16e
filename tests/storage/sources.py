"""Sources for put(): made up on the fly, never held whole in memory, and able to fail half-way."""

from __future__ import annotations

import hashlib

MIB = 1024 * 1024
_PATTERN = bytes(range(251)) * 4096  # a prime-length cycle, so shifted or repeated chunks show


class SourceBroke(Exception):
    """Raised by FailingSource: stands for the caller's download dying mid-transfer."""


class PatternSource:
    """`size` bytes of a repeating pattern, produced by read(n) calls as a network stream would:
    with `max_read`, each call returns at most that many bytes, like a socket."""

    def __init__(self, size: int, max_read: int | None = None):
        self.size = size
        self.max_read = max_read
        self.position = 0
        self.requested_sizes: list[int] = []

    def read(self, size: int = -1) -> bytes:
        self.requested_sizes.append(size)
        remaining = self.size - self.position
        count = remaining if size is None or size < 0 else min(size, remaining)
        if self.max_read is not None:
            count = min(count, self.max_read)
        chunk = bytearray()
        while len(chunk) < count:
            offset = (self.position + len(chunk)) % 251
            chunk += _PATTERN[offset : offset + count - len(chunk)]
        self.position += count
        return bytes(chunk)


def pattern_sha256(size: int) -> str:
    source, digest = PatternSource(size), hashlib.sha256()
    while chunk := source.read(MIB):
        digest.update(chunk)
    return digest.hexdigest()


class FailingSource(PatternSource):
    """Yields `fail_after` bytes, then raises SourceBroke."""

    def __init__(self, fail_after: int):
        super().__init__(size=fail_after * 2)
        self.fail_after = fail_after

    def read(self, size: int = -1) -> bytes:
        if self.position >= self.fail_after:
            raise SourceBroke(f"connection lost after {self.position} bytes")
        until_failure = self.fail_after - self.position
        return super().read(until_failure if size is None or size < 0 else min(size, until_failure))
