"""`hash-password` and `new-api-key`: credentials for the configuration file. A password is read from a
pipe (one line) or asked for twice on a terminal, never taken from the command line."""

from __future__ import annotations

import fcntl
import hashlib
import os
import pty
import subprocess
import sys
import termios
import time

from werkzeug.security import check_password_hash

CLI = [sys.executable, "-m", "webhook_service.cli"]


def _hash_password(stdin: bytes, *arguments: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*CLI, "hash-password", *arguments], input=stdin, capture_output=True, timeout=60)


def test_a_piped_password_is_read_from_standard_input():
    # `echo pw | webhook-service hash-password` used to abort, waiting for a confirmation from the pipe.
    result = _hash_password(b"s3cret pass with spaces\n")
    assert result.returncode == 0, result.stderr
    [hashed] = result.stdout.decode().splitlines()
    assert check_password_hash(hashed, "s3cret pass with spaces")
    # Without a trailing newline (printf '%s'), and with a Windows line end, it is the same password.
    for piped in (b"s3cret pass with spaces", b"s3cret pass with spaces\r\n"):
        assert check_password_hash(_hash_password(piped).stdout.decode().strip(), "s3cret pass with spaces")


def test_an_empty_password_is_refused():
    for piped in (b"", b"\n"):
        result = _hash_password(piped)
        assert result.returncode == 2 and b"the password is empty" in result.stderr and result.stdout == b""


def test_the_password_cannot_be_given_on_the_command_line():
    # It would be in the shell's history and in every other user's `ps`.
    result = _hash_password(b"", "--password", "on-the-command-line")
    assert result.returncode == 2 and b"No such option '--password'" in result.stderr


def test_on_a_terminal_it_asks_twice_without_echoing_and_prints_only_the_hash():
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [*CLI, "hash-password"],
        stdin=terminal,
        stdout=subprocess.PIPE,
        stderr=terminal,
        start_new_session=True,
        preexec_fn=_controlled_by_standard_input,
    )
    os.close(terminal)
    try:
        screen = _read_until(controller, b"Password: ")
        os.write(controller, b"typed-secret\n")
        screen += _read_until(controller, b"Repeat for confirmation: ")
        os.write(controller, b"typed-secret\n")
        output, _ = process.communicate(timeout=60)
    finally:
        os.close(controller)
    assert process.returncode == 0
    assert b"typed-secret" not in screen  # not echoed
    assert check_password_hash(output.decode().strip(), "typed-secret")  # prompts went to the terminal, not stdout


def _controlled_by_standard_input() -> None:
    # The terminal becomes the command's controlling terminal, as in a login shell (getpass opens it).
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _read_until(descriptor: int, marker: bytes, timeout: float = 30) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        assert time.monotonic() < deadline, seen
        seen += os.read(descriptor, 1024)
    return seen


def test_new_api_key_prints_a_key_and_its_hash():
    key, digest = subprocess.run([*CLI, "new-api-key"], capture_output=True, text=True, timeout=60).stdout.splitlines()
    assert hashlib.sha256(key.split()[-1].encode()).hexdigest() == digest.split()[-1]
