"""A directory the service keeps its files in that cannot be made or written (a read-only volume, a file
where a directory should be, a full disk) stops a command, and the web's and worker's processes as they
start, with one line naming the setting, the directory and the reason, and exit code 6: never the
traceback of the mkdir that failed. Any other error (a bug) keeps its traceback.

Here at unit level and through the commands that run in-process; the processes themselves (`run`, `worker`,
gunicorn) in tests/cli/test_run.py and tests/service/test_run_listening.py."""

from __future__ import annotations

import errno
import os
import signal
import sys

import pytest
from click.testing import CliRunner, Result

from tests.fixtures.services import service_unavailable
from tests.support.small_filesystem import remount, small_filesystem
from webhook_service.cli.failures import (
    ConfigurationFailure,
    DirectoryUnusable,
    directory_failure,
    exit_on_operator_failure,
    operator_failure,
)
from webhook_service.cli.main import cli
from webhook_service.config.model import ConfigError
from webhook_service.observability.metrics_sharing import start_fresh
from webhook_service.worker.supervisor import WorkerProcesses

MUST = "it must be a directory the service can create and write"


@pytest.fixture
def configured(tmp_path, monkeypatch):
    """The settings of these variables alone, in an empty current directory."""
    monkeypatch.delenv("WEBHOOK_SERVICE_CONFIG", raising=False)
    for variable in ("DATABASE_URL", "DATA_DIR", "REDIS_URL"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.chdir(tmp_path)

    def configure(**variables: str) -> None:
        for name, value in variables.items():
            monkeypatch.setenv(name, value)

    return configure


def _invoke(*arguments: str) -> Result:
    return CliRunner().invoke(cli, list(arguments), catch_exceptions=False)


# What the system refuses a place with, and the path it names.
REFUSALS = [
    (errno.EROFS, "Read-only file system"),
    (errno.EACCES, "Permission denied"),
    (errno.EPERM, "Operation not permitted"),
    (errno.ENOTDIR, "Not a directory"),
    (errno.EEXIST, "File exists"),
    (errno.ENOSPC, "No space left on device"),
    (errno.EDQUOT, "Disk quota exceeded"),
]


@pytest.mark.parametrize(("number", "reason"), REFUSALS, ids=[errno.errorcode[number] for number, _ in REFUSALS])
def test_a_refused_path_in_the_data_directory_is_one_line_naming_the_setting(configured, tmp_path, number, reason):
    configured(DATA_DIR=str(tmp_path / "data"))
    failure = directory_failure(OSError(number, reason, str(tmp_path / "data" / "metrics" / "web")))
    assert isinstance(failure, DirectoryUnusable) and failure.exit_code == 6
    assert failure.message == (
        f"data_dir {tmp_path / 'data'} cannot be used ({tmp_path / 'data' / 'metrics' / 'web'}: {reason}): {MUST}"
    )


def test_the_innermost_setting_is_named(configured, tmp_path):
    # The local store inside the data directory is the store's setting; the data directory itself, its own.
    data, store = tmp_path / "data", tmp_path / "data" / "media"
    configured(DATA_DIR=str(data), WEBHOOK__STORAGE__LOCAL_DIR=str(store))
    in_store = directory_failure(NotADirectoryError(errno.ENOTDIR, "Not a directory", str(store / "objects")))
    assert in_store is not None
    assert (
        in_store.message == f"storage.local_dir {store} cannot be used ({store / 'objects'}: Not a directory): {MUST}"
    )
    itself = directory_failure(PermissionError(errno.EROFS, "Read-only file system", str(data)))
    assert itself is not None
    assert itself.message == f"data_dir {data} cannot be used (Read-only file system): {MUST}"  # no path twice


def test_an_sqlite_database_elsewhere_is_named_by_its_url(configured, tmp_path):
    configured(DATA_DIR=str(tmp_path / "data"), DATABASE_URL=f"sqlite:///{tmp_path / 'db' / 'service.db'}")
    failure = directory_failure(OSError(errno.EROFS, "Read-only file system", str(tmp_path / "db")))
    assert failure is not None
    assert failure.message.startswith(f"database_url's directory {tmp_path / 'db'} cannot be used (")


@pytest.mark.parametrize(
    "error",
    [
        OSError(errno.EROFS, "Read-only file system", "/somewhere/else"),  # none of the service's directories
        OSError(errno.EROFS, "Read-only file system", "DATA-other/x"),  # a name that merely begins like one
        OSError(errno.ENOENT, "No such file or directory", "DATA/x"),  # not a refusal: a file looked for
        OSError(errno.EIO, "Input/output error", "DATA/x"),
        OSError(errno.EROFS, "Read-only file system"),  # names no path
        RuntimeError("DATA/x"),
        KeyError("data_dir"),
    ],
    ids=["elsewhere", "beside", "ENOENT", "EIO", "no path", "RuntimeError", "KeyError"],
)
def test_any_other_error_is_a_bug_and_keeps_its_traceback(configured, tmp_path, error):
    configured(DATA_DIR=str(tmp_path / "data"))
    if isinstance(error, OSError) and error.filename:
        error.filename = error.filename.replace("DATA", str(tmp_path / "data"))
    assert directory_failure(error) is None
    assert operator_failure(error) is None
    assert exit_on_operator_failure(error) is None  # returns: the caller raises it again


def test_a_configuration_error_is_its_line_and_exit_code_2(configured):
    failure = operator_failure(ConfigError("media.max_bytes: too big"))
    assert isinstance(failure, ConfigurationFailure) and failure.exit_code == 2


def test_the_web_exits_with_the_line_and_the_code_it_is_given(configured, tmp_path, capsys):
    """What wsgi.py (with gunicorn's "App failed to load", 4) and gunicorn_config.py (with the failure's
    own) do with a failure as the web starts."""
    configured(DATA_DIR=str(tmp_path / "data"))
    error = OSError(errno.EROFS, "Read-only file system", str(tmp_path / "data" / "tmp"))
    with pytest.raises(SystemExit) as exited:
        exit_on_operator_failure(error, 4)
    assert exited.value.code == 4
    line = f"webhook-service: data_dir {tmp_path / 'data'} cannot be used ({tmp_path / 'data' / 'tmp'}: Read-only file system): {MUST}\n"
    assert capsys.readouterr().err == line
    with pytest.raises(SystemExit) as exited:
        exit_on_operator_failure(error)
    assert exited.value.code == 6


# Through the commands ----------------------------------------------------------------------------------


def test_a_data_directory_under_a_file_is_one_line_for_migrate(configured, tmp_path):
    # SQLite's directory is made as the engine is: the mkdir's traceback, before.
    (tmp_path / "a-file").write_text("")
    configured(DATA_DIR=str(tmp_path / "a-file" / "data"))
    result = _invoke("migrate")
    assert result.exit_code == 6
    assert result.stderr == (
        f"webhook-service: data_dir {tmp_path / 'a-file' / 'data'} cannot be used (Not a directory): {MUST}\n"
    )


def test_a_local_store_under_a_file_is_one_line_for_storage_init(configured, tmp_path):
    (tmp_path / "a-file").write_text("")
    store = tmp_path / "a-file" / "blobs"
    configured(DATA_DIR=str(tmp_path / "data"), WEBHOOK__STORAGE__LOCAL_DIR=str(store))
    result = _invoke("storage", "init")
    assert result.exit_code == 6
    assert (
        result.stderr
        == f"webhook-service: storage.local_dir {store} cannot be used ({store / 'objects'}: Not a directory): {MUST}\n"
    )


def test_a_metrics_directory_that_is_there_but_read_only_is_found_as_its_kind_starts(tmp_path):
    """A data directory on a volume mounted read-only since it was made: every directory is there, so
    making them succeeds; only writing fails, and did in each process as prometheus_client defined its
    first metric (a traceback from every gunicorn worker and worker process)."""
    volume = tmp_path / "volume"
    with small_filesystem(volume, 64 * 1024) as mounted:
        if not mounted:
            service_unavailable("a volume of the test's own (a tmpfs)", "mounting one needs root")
        start_fresh(volume / "metrics" / "web")
        remount(volume, read_only=True)
        with pytest.raises(OSError) as error:
            start_fresh(volume / "metrics" / "web")
    assert error.value.errno == errno.EROFS
    assert error.value.filename == str(volume / "metrics" / "web")  # the directory, not a probe's name


# The worker's consumers --------------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "stops"), [(6, True), (2, True), (3, False), (1, False)])
def test_a_consumer_that_could_not_start_for_good_stops_the_worker(code, stops):
    """A consumer that ends with a code of a failure the next start would meet alike (the command line's
    for a configuration or a directory it cannot use) stops the worker with that code; with another (the
    database, which may come back; a bug) it is started again."""
    handlers = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    supervisor = WorkerProcesses([1], final_exit_codes=(2, 6), stop_timeout=5)
    child = supervisor._children[0]
    child.command = [sys.executable, "-c", f"import sys; sys.exit({code})"]
    try:
        if stops:
            assert supervisor.run() == code
        else:
            supervisor._start(child)
            assert child.process is not None and child.process.wait(timeout=10) == code
            supervisor._watch()
            assert child.restart_at is not None  # to be started again
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)
        if child.process is not None and child.process.poll() is None:
            os.kill(child.process.pid, signal.SIGKILL)
