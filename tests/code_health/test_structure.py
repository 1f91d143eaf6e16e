"""The house rules of docs/architecture.md, checked on every run: dependencies point one way and form no
cycle (import-linter, contracts in pyproject.toml), no import hides inside a function, no six lines of
code stand twice, and no file refers to a document the repository does not hold."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("webhook_service", "storage")
BIN = Path(sys.executable).parent

# Imports that stay inside a function on purpose, each with its reason. Nothing else may: an import in a
# function hides a dependency (often a cycle) from the reader and from the import rules.
DEFERRED_IMPORTS = {
    # azure-identity is an optional extra; without it, the store explains what to install.
    ("storage/azure.py", "azure.identity")
}


def package_files() -> list[Path]:
    return sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))


def test_import_contracts_hold() -> None:
    """Layers (entry points -> composition root -> parts -> shared -> storage) and no cycles."""
    result = subprocess.run(
        [str(BIN / "lint-imports"), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_import_hides_in_a_function() -> None:
    hidden = []
    for path in package_files():
        relative = path.relative_to(ROOT).as_posix()
        for function in ast.walk(ast.parse(path.read_text())):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    module = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                    if (relative, module) not in DEFERRED_IMPORTS:
                        hidden.append(f"{relative}:{node.lineno} imports {module} in {function.name}()")
    assert hidden == []


def test_type_checking_imports_are_only_the_lazy_blob_stores() -> None:
    """`if TYPE_CHECKING:` imports are another way to hide a dependency; the storage package uses them
    only to name the backends it loads on first use (so that boto3 and the Azure SDK load only when
    configured)."""
    found = []
    for path in package_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
                found.append(path.relative_to(ROOT).as_posix())
    assert found == ["storage/__init__.py"]


# Duplicated code ---------------------------------------------------------------------------------------

WINDOW = 6
# Generated revisions repeat their column lists by nature; they are history, not code to factor.
NOT_CODE = ("webhook_service/database/migrations/",)


def code_lines(path: Path) -> list[tuple[int, str]]:
    """The file's lines that are code: not blank, not comments, not docstrings, and not the parameter
    lists of signatures (an abstract method and its implementations must repeat those)."""
    source = path.read_text()
    skipped: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            skipped.update(range(node.lineno, node.body[0].lineno))
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            value = body[0].value
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                skipped.update(range(body[0].lineno, (body[0].end_lineno or body[0].lineno) + 1))
    if source.startswith(('"""', "'''")):
        skipped.update(range(1, source.index(source[:3], 3) + 1))
    lines = []
    for number, line in enumerate(source.splitlines(), start=1):
        text = line.strip()
        if number not in skipped and text and not text.startswith("#"):
            lines.append((number, text))
    return lines


def test_no_six_lines_of_code_stand_twice() -> None:
    seen: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for path in package_files():
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith(NOT_CODE):
            continue
        lines = code_lines(path)
        for start in range(len(lines) - WINDOW + 1):
            window = tuple(text for _, text in lines[start : start + WINDOW])
            # A run of closing brackets and bare keywords is not logic worth factoring out.
            if sum(len(text) > 3 for text in window) < WINDOW - 1:
                continue
            seen[window].append(f"{relative}:{lines[start][0]}")
    repeated = {"\n".join(window): places for window, places in seen.items() if len(set(places)) > 1}
    assert repeated == {}


# Documents ---------------------------------------------------------------------------------------------

DOCUMENT_REFERENCE = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*[\w.-]+\.md)\b")
TEXT_SUFFIXES = {".py", ".md", ".toml", ".sh", ".cfg", ".txt", ".json", ".yml", ".yaml", ".html"}


def repository_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return [
        ROOT / name
        for name in listed.stdout.splitlines()
        if (ROOT / name).suffix in TEXT_SUFFIXES and (ROOT / name).is_file() and not name.startswith("node_modules/")
    ]


@pytest.mark.parametrize("path", repository_files(), ids=lambda path: path.relative_to(ROOT).as_posix())
def test_every_document_referred_to_is_in_the_repository(path: Path) -> None:
    missing = []
    for name in DOCUMENT_REFERENCE.findall(path.read_text(errors="replace")):
        # Relative to the file itself (Markdown links) or to the repository root (prose).
        if not (path.parent / name).exists() and not (ROOT / name).exists():
            missing.append(name)
    assert missing == []


def _logged_events() -> dict[str, str]:
    """Every event name the service passes to `log(logger, "<event>", ...)`, with the file that logs it."""
    events = {}
    for path in sorted((ROOT / "webhook_service").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "log" and len(node.args) >= 2:
                event = node.args[1]
                if isinstance(event, ast.Constant) and isinstance(event.value, str):
                    events.setdefault(event.value, str(path.relative_to(ROOT)))
    return events


def test_every_logged_event_is_in_the_readmes_list() -> None:
    """Operators alert on event names: each one the code logs is named in README's "Logs and metrics"."""
    readme = (ROOT / "README.md").read_text()
    events = _logged_events()
    assert len(events) > 40  # the scan finds them
    missing = {event: path for event, path in events.items() if f"`{event}`" not in readme}
    assert missing == {}
