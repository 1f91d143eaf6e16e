"""A wheel that deploys: built from the files a release ships, installed into a fresh virtualenv, run from a
directory that is not the checkout, it migrates, serves a webhook and answers /readyz, with
`webhook-service run` and with the Procfile's own commands; and it holds every file of the packages, as
pyproject.toml lists them."""

from __future__ import annotations

import shlex
import tomllib
import zipfile
from pathlib import Path

import pytest
import requests

import webhook_service
from tests.fixtures.services import free_port
from tests.service.gunicorn import serve, stop
from tests.service.installed_wheel import (
    ROOT,
    build_wheel,
    copy_release_sources,
    fresh_virtualenv,
    link_distributions,
    required_distributions,
    run,
    wheel_metadata,
)

pytestmark = pytest.mark.slow

# The development configuration's tenant number and API user, which the README's first curl uses.
DEVELOPMENT_NUMBER = "+15551234567"
DEVELOPMENT_USER = ("your-email@example.com", "your-password")


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> tuple[Path, Path]:
    """(the copied release sources, the wheel built from them)."""
    sources = copy_release_sources(tmp_path_factory.mktemp("release"))
    return sources, build_wheel(sources, tmp_path_factory.mktemp("dist"))


def test_the_wheel_holds_every_file_of_the_packages_and_pyproject_lists_only_files_that_exist(release):
    sources, wheel = release
    shipped = {
        path.relative_to(sources).as_posix()
        for package in ("webhook_service", "storage")
        for path in (sources / package).rglob("*")
        if path.is_file()
    }
    with zipfile.ZipFile(wheel) as archive:
        assert shipped - set(archive.namelist()) == set()
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    for package, patterns in package_data.items():
        for pattern in patterns:
            assert list((sources / package).glob(pattern)), f"package-data {package}: {pattern} matches no file"
    metadata = wheel_metadata(wheel)
    assert metadata["Version"] == [webhook_service.__version__]
    assert metadata["License-Expression"] == ["Apache-2.0"]


def test_the_installed_wheel_migrates_serves_a_webhook_and_answers_readyz(release, tmp_path):
    _, wheel = release
    dependencies = tmp_path / "dependencies"
    dependencies.mkdir()
    link_distributions(required_distributions(wheel_metadata(wheel)["Requires-Dist"]), dependencies)
    bin_directory = fresh_virtualenv(tmp_path / "venv", wheel, dependencies)
    # Nothing of the checkout: not its working directory, not its environment variables.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    environment = {
        "PATH": f"{bin_directory}:/usr/bin:/bin",
        "HOME": str(tmp_path / "home"),
        "LANG": "C.UTF-8",
        "DATA_DIR": str(tmp_path / "data"),
    }

    imported = run(
        [
            str(bin_directory / "python"),
            "-c",
            "import webhook_service, storage; print(webhook_service.__file__); print(storage.__file__)",
        ],
        cwd=elsewhere,
        env=environment,
    )
    assert all(Path(path).is_relative_to(tmp_path / "venv") for path in imported.split()), imported
    version = run([str(bin_directory / "webhook-service"), "--version"], cwd=elsewhere, env=environment)
    assert version.split()[-1] == webhook_service.__version__
    # The installed package carries its migrations: all of them are applied to the new database by the
    # Procfile's release command.
    procfile = _procfile(bin_directory)
    assert "migrations to an empty database" in run(procfile["release"], cwd=elsewhere, env=environment)

    port = free_port()
    config = tmp_path / "service.toml"
    config.write_text(f"port = {port}\n")
    # `run` (web and worker), then the Procfile's web process alone: its gunicorn imports the app from the
    # installed package, not from a checkout's wsgi.py.
    for name, command in (("run", [str(bin_directory / "webhook-service"), "run"]), ("web", procfile["web"])):
        served = serve(config, port, command=command, environment=environment, cwd=elsewhere)
        try:
            message_id = f"wheel-{name}"
            webhook = {
                "type": "message.received",
                "data": {
                    "providerMessageId": message_id,
                    "from": "+15550001111",
                    "to": [DEVELOPMENT_NUMBER],
                    "text": "Hi",
                },
            }
            assert requests.post(f"{served.base}/webhooks/standard", json=webhook, timeout=10).status_code == 200
            ready = requests.get(f"{served.base}/readyz", timeout=10)
            assert ready.status_code == 200, ready.text
            assert ready.json()["status"] == "ready"
            found = requests.get(
                f"{served.base}/api/v1/messages",
                params={"providerMessageId": message_id},
                auth=DEVELOPMENT_USER,
                timeout=10,
            )
            assert [message["text"] for message in found.json()["messages"]] == ["Hi"]
            assert served.process.poll() is None, served.log_tail()  # still running (with `run`, web and worker)
        finally:
            stop(served)


def _procfile(bin_directory: Path) -> dict[str, list[str]]:
    """The repository's Procfile, each process's command run from the virtualenv at `bin_directory`.
    Its dependencies are borrowed, without their scripts, so gunicorn is run as `python -m gunicorn`."""
    processes = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip():
            name, command = line.split(":", 1)
            program, *arguments = shlex.split(command)
            start = (
                [str(bin_directory / "python"), "-m", "gunicorn"]
                if program == "gunicorn"
                else [str(bin_directory / program)]
            )
            processes[name] = [*start, *arguments]
    assert set(processes) == {"release", "web", "worker"}, processes
    return processes
