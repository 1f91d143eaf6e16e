"""Where the processes of one host keep their Prometheus values, so that a scrape adds them all up.

prometheus_client keeps a process's values in its memory unless PROMETHEUS_MULTIPROC_DIR names a
directory when prometheus_client is first imported; then every process writes its values to files
there, and a scrape adds the files up. Without them, under gunicorn each scrape saw the counters of
whichever worker answered it, and the worker's downloads (processes that serve no HTTP) were seen by
no scrape at all.

Each kind of process has its directory under `data_dir/metrics/`, emptied by whatever starts that kind:
`web/` for gunicorn's workers (by the master, `gunicorn_config.py`), `worker/` for the consumer
processes of `webhook-service worker` (by that command). The web's /metrics adds up both, so one scrape
target per host covers what every process sharing that data directory counted; with
`worker_metrics_port` set, the worker serves its own directory on that port, and the web's /metrics
leaves it out (so nothing is counted twice).

This module does not import prometheus_client: `share_metrics` must run before anything does.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
WEB = "web"
WORKER = "worker"


def metrics_directory(data_dir: Path, kind: str) -> Path:
    return data_dir.resolve() / "metrics" / kind


def share_metrics(data_dir: Path, kind: str) -> Path:
    """Make this process, and the processes it starts, write their values under the directory of
    `kind`; returns it. Raises if prometheus_client was already imported for another directory (its
    values would silently stay in memory)."""
    directory = metrics_directory(data_dir, kind)
    if "prometheus_client" in sys.modules and os.environ.get(MULTIPROCESS_VARIABLE) != str(directory):
        raise RuntimeError(f"prometheus_client was imported before {MULTIPROCESS_VARIABLE} was set")
    os.environ[MULTIPROCESS_VARIABLE] = str(directory)
    return directory


def start_fresh(directory: Path) -> None:
    """Empty `directory` as its kind starts: the files of processes from before are history (to
    Prometheus, the counters start again, as after any restart). Raises OSError, naming the directory,
    when it cannot be made or written in."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)
    # Written in once: a directory that is there but cannot be written (a data directory on a volume
    # mounted read-only since) is found here, before any process of the kind starts, not by
    # prometheus_client as each of them defines its metrics.
    try:
        tempfile.TemporaryFile(dir=directory).close()
    except OSError as error:
        raise OSError(error.errno, error.strerror, str(directory)) from error


def web_scrape_directories(data_dir: Path, *, worker_serves_its_own: bool) -> list[Path]:
    """What the web's /metrics adds up: its own processes' directory and, unless the worker serves its
    own, the worker's. None when this process keeps its values in memory (tests, a lone process)."""
    own = os.environ.get(MULTIPROCESS_VARIABLE)
    if not own:
        return []
    directories = [Path(own)]
    worker = metrics_directory(data_dir, WORKER)
    if not worker_serves_its_own and worker != directories[0]:
        directories.append(worker)
    return directories
