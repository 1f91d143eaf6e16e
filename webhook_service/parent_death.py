"""A child process that ends with its parent (Linux's prctl(PR_SET_PDEATHSIG)): what a process killed
outright (SIGKILL, the OOM killer) cannot do itself, the kernel does as it ends. Used by gunicorn's
workers (gunicorn_config.py) and by the web and worker that `webhook-service run` starts (cli/serve.py).
Elsewhere than Linux it does nothing."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

# prctl(2): the signal the kernel sends this process when its parent ends.
PR_SET_PDEATHSIG = 1


def end_with_parent(parent: int, number: signal.Signals) -> None:
    """From now on this process gets signal `number` when `parent` ends; and at once, if it has already
    ended. The signal comes when the thread that forked this process ends: gunicorn forks from its
    master's main thread, and `run` starts its children from its own."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, number, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # the parent ended between fork() and prctl(): no signal will come
        os.kill(os.getpid(), number)
