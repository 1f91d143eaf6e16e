"""A command interrupted (SIGINT, Ctrl-C) ends by the signal, as an interrupted program does, not with
click's "Aborted!" and code 1, which a parent such as `run` cannot tell from a failure."""

from __future__ import annotations

import signal
import subprocess
import sys

# The real command group, with one more command that is interrupted as it runs: as the worker is when
# `run`'s stop arrives after the command started and before it has set its own handlers.
INTERRUPTED_COMMAND = """
import sys
import click
import webhook_service.cli.main as main

@click.command()
def interrupted():
    raise KeyboardInterrupt

sys.modules["__main__"].interrupted = interrupted
main.COMMANDS["interrupted"] = "__main__:interrupted"
main.main()
"""


def test_an_interrupted_command_ends_by_the_signal_and_says_nothing():
    ended = subprocess.run(
        [sys.executable, "-c", INTERRUPTED_COMMAND, "interrupted"], capture_output=True, text=True, timeout=60
    )
    assert ended.returncode == -signal.SIGINT, ended.stderr
    assert ended.stderr == ""
