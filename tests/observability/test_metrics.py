"""The worker's queue and sweep metrics, counted by the real pipeline and runtime; and where processes
keep their values (`metrics_sharing`), which must be decided before prometheus_client is imported.
(That a scrape adds up every process's values is proven on real processes: tests/service/.)"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY

from tests.fixtures.services import free_port
from tests.support.standard import inbound_body, post_standard
from webhook_service.database.tables import ATTACHMENTS
from webhook_service.media.pipeline import SWEEP_BATCH
from webhook_service.observability import metrics_sharing
from webhook_service.observability.metrics_sharing import (
    MULTIPROCESS_VARIABLE,
    metrics_directory,
    share_metrics,
    web_scrape_directories,
)


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def settings_overrides():
    # A Redis nobody listens on: every enqueue fails at once (connection refused).
    return {"redis_url": f"redis://127.0.0.1:{free_port()}/0"}


def test_enqueues_that_give_up_are_counted(client, runtime):
    before = value("queue_enqueue_failures_total")
    attachments = [{"url": f"https://media.example/{index}.png"} for index in range(3)]
    assert post_standard(client, inbound_body("m-enqueue", attachments=attachments)).status_code == 200
    assert value("queue_enqueue_failures_total") == before + 3


def test_each_sweep_run_is_counted_with_what_it_enqueued(client, runtime, monkeypatch):
    enqueued: list[str] = []
    monkeypatch.setattr(runtime.queue, "enqueue", lambda ids, eta=None: enqueued.extend(ids))
    attachments = [{"url": f"https://media.example/{index}.png"} for index in range(2)]
    assert post_standard(client, inbound_body("m-sweep", attachments=attachments)).status_code == 200
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    with runtime.db.writing() as connection:
        connection.execute(sa.update(ATTACHMENTS).values(next_attempt_at=long_ago))
    enqueued.clear()
    runs = {stopped: value("attachment_sweep_runs_total", stopped=stopped) for stopped in ("done", "deferred")}
    swept = value("attachment_sweep_enqueued_total")

    assert runtime.attachments.sweep(SWEEP_BATCH) == 0  # the queue holds a batch: left alone
    assert value("queue_waiting_tasks") == SWEEP_BATCH
    assert runtime.attachments.sweep(3) == 2 and len(enqueued) == 2
    assert value("queue_waiting_tasks") == 3
    assert value("attachment_sweep_runs_total", stopped="deferred") == runs["deferred"] + 1
    assert value("attachment_sweep_runs_total", stopped="done") == runs["done"] + 1
    assert value("attachment_sweep_enqueued_total") == swept + 2


def test_each_kind_of_process_has_its_directory_under_the_data_directory(tmp_path):
    assert metrics_directory(tmp_path, "web") == tmp_path.resolve() / "metrics" / "web"
    assert metrics_directory(tmp_path, "worker") == tmp_path.resolve() / "metrics" / "worker"


def test_the_directory_cannot_be_set_once_prometheus_client_is_imported(tmp_path, monkeypatch):
    monkeypatch.delenv(MULTIPROCESS_VARIABLE, raising=False)
    assert "prometheus_client" in sys.modules  # this test process has imported it
    with pytest.raises(RuntimeError, match="imported before"):
        share_metrics(tmp_path, "worker")
    assert MULTIPROCESS_VARIABLE not in os.environ


def test_the_service_entry_points_import_prometheus_client_only_after_choosing_the_directory(tmp_path):
    """What gunicorn's master and `webhook-service worker` import before they call share_metrics."""
    check = (
        "import sys\n"
        "import webhook_service.cli.main, webhook_service.cli.worker\n"
        "import webhook_service.gunicorn_logging, webhook_service.gunicorn_worker\n"
        "import webhook_service.observability.metrics_sharing, webhook_service.settings\n"
        "assert 'prometheus_client' not in sys.modules, 'imported too early'\n"
    )
    subprocess.run([sys.executable, "-c", check], check=True, timeout=60)


def test_the_webs_scrape_adds_up_the_workers_directory_unless_the_worker_serves_its_own(tmp_path, monkeypatch):
    web = metrics_directory(tmp_path, "web")
    worker = metrics_directory(tmp_path, "worker")
    monkeypatch.delenv(MULTIPROCESS_VARIABLE, raising=False)
    assert web_scrape_directories(tmp_path, worker_serves_its_own=False) == []  # one process, in memory
    monkeypatch.setenv(MULTIPROCESS_VARIABLE, str(web))
    assert web_scrape_directories(tmp_path, worker_serves_its_own=False) == [web, worker]
    assert web_scrape_directories(tmp_path, worker_serves_its_own=True) == [web]


def test_starting_fresh_empties_only_its_own_directory(tmp_path):
    web, worker = metrics_directory(tmp_path, "web"), metrics_directory(tmp_path, "worker")
    for directory in (web, worker):
        directory.mkdir(parents=True)
        (directory / "counter_1.db").write_bytes(b"old")
    metrics_sharing.start_fresh(worker)
    assert list(worker.iterdir()) == [] and (web / "counter_1.db").exists()
