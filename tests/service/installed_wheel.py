"""The service as a user installs it: the wheel `pip wheel` builds from the files a release ships, installed
into a virtualenv of its own.

Downloading every dependency again on each run would take a minute and the network, so the new
environment borrows them from this one, through a directory of links to exactly the distributions the
wheel's metadata requires (followed through their own requirements). A dependency the service imports but
pyproject.toml does not declare is missing there, as it would be on a user's machine; the source tree,
and this environment's editable install of it, are not visible at all."""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterable
from email.parser import Parser
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
# What a build needs: pyproject.toml names the readme and the licence file, and the two packages.
RELEASE_FILES = ("pyproject.toml", "README.md", "LICENSE")
RELEASE_PACKAGES = ("webhook_service", "storage")
NOT_RELEASED = shutil.ignore_patterns("__pycache__", "*.pyc")


def copy_release_sources(target: Path) -> Path:
    """The files a wheel is built from, copied to `target`, so that the build writes nothing into the
    checkout and cannot depend on anything else in it."""
    for name in RELEASE_FILES:
        shutil.copy2(ROOT / name, target / name)
    for package in RELEASE_PACKAGES:
        shutil.copytree(ROOT / package, target / package, ignore=NOT_RELEASED)
    return target


def build_wheel(sources: Path, output: Path) -> Path:
    """`pip wheel` of `sources` with this environment's setuptools (no build isolation: offline)."""
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index"]
    run([*pip_wheel, "--wheel-dir", str(output), str(sources)])
    (wheel,) = output.glob("*.whl")
    return wheel


def wheel_metadata(wheel: Path) -> dict[str, list[str]]:
    """The wheel's METADATA fields, each with all its values."""
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [name for name in archive.namelist() if name.endswith(".dist-info/METADATA")]
        message = Parser().parsestr(archive.read(name).decode())
    fields: dict[str, list[str]] = {}
    for key, value in message.items():
        fields.setdefault(key, []).append(value)
    return fields


def required_distributions(requirements: Iterable[str]) -> list[importlib.metadata.Distribution]:
    """The distributions of this environment that `requirements` need, and theirs in turn (markers
    evaluated here, extras followed)."""
    found: dict[str, importlib.metadata.Distribution] = {}
    extras_seen: set[tuple[str, str]] = set()
    pending = [(Requirement(text), "") for text in requirements]
    while pending:
        requirement, extra = pending.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(requirement.name)
        if name not in found:
            found[name] = importlib.metadata.distribution(name)
        for wanted in ("", *requirement.extras):
            if (name, wanted) not in extras_seen:
                extras_seen.add((name, wanted))
                pending.extend((Requirement(text), wanted) for text in found[name].requires or [])
    return list(found.values())


def link_distributions(distributions: Iterable[importlib.metadata.Distribution], target: Path) -> None:
    """Link every top-level module, package and metadata directory of `distributions` into `target`."""
    for distribution in distributions:
        for top in {file.parts[0] for file in distribution.files or []} - {"..", "__pycache__"}:
            link = target / top
            if not link.exists():  # namespace packages (azure) are shared by several distributions
                link.symlink_to(Path(distribution.locate_file(top)))


def fresh_virtualenv(directory: Path, wheel: Path, dependencies: Path) -> Path:
    """A new virtualenv at `directory` whose packages are the wheel's, with its dependencies from
    `dependencies`; returns its bin directory. pip refuses to install the wheel if a declared
    requirement is not met there (it may not download anything)."""
    run([sys.executable, "-m", "venv", "--without-pip", str(directory)])
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site_packages = directory / "lib" / version / "site-packages"
    (site_packages / "borrowed-dependencies.pth").write_text(f"{dependencies}\n")
    python = directory / "bin" / "python"
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-index", str(wheel)])
    return directory / "bin"


def run(command: list[str], **options) -> str:
    """Run `command` to its end; its stdout, or an AssertionError with everything it said."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, **options)
    assert result.returncode == 0, f"{command} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result.stdout
