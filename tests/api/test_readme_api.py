"""README's HTTP API section says what the OpenAPI document says: the range and default of every
parameter the document bounds, in the README line of its operation, and of every bounded whole-number
body field; the endpoints API's body limit (its 413); and the 503 with Retry-After that every operation
declares."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.api.document_requests import DocumentedOperation, documented_operations
from webhook_service.api.endpoints import MAX_BODY_BYTES
from webhook_service.api.errors import RETRY_AFTER_SECONDS
from webhook_service.api.openapi import build_spec

README = Path(__file__).parents[2] / "README.md"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return build_spec(max_file_bytes=5 * 1024 * 1024, allowed_types=["image/png"])


@pytest.fixture(scope="module")
def api_section() -> str:
    """README's "HTTP API" section, its subsections included."""
    text = README.read_text()
    start = text.index("\n## HTTP API\n")
    return text[start : text.index("\n## ", start + 1)]


def _flat(text: str) -> str:
    return " ".join(text.split())


def _readme_item(api_section: str, operation: DocumentedOperation) -> str:
    """The README list item that starts with the operation, as `GET /api/v1/endpoints/<id>/attempts...`:
    its path with each {variable} written <anything>."""
    path = "<[^<>`]+>".join(re.escape(part) for part in re.split(r"\{[^{}]+\}", operation.path))
    found = re.search(rf"^- `{operation.method} {path}[`?]", api_section, re.MULTILINE)
    assert found, f"README's HTTP API section has no item for {operation.name}"
    end = re.search(r"\n(?:- |\n)", api_section[found.end() :])
    return _flat(api_section[found.start() : found.end() + (end.start() if end else len(api_section))])


def _bounds(schema: dict[str, Any]) -> dict[str, Any] | None:
    """The whole-number alternative of a schema (a query's, which may also be empty; a field's, which
    may be null) with a minimum or a maximum, or None."""
    for choice in [schema, *schema.get("anyOf", [])]:
        if choice.get("type") == "integer" and ("minimum" in choice or "maximum" in choice):
            return choice
    return None


def _range(bounds: dict[str, Any]) -> str:
    return f"{bounds['minimum']:,}–{bounds['maximum']:,}"


def test_every_bounded_parameter_has_its_range_and_default_in_the_readme_item_of_its_operation(document, api_section):
    missing = []
    for operation in documented_operations(document):
        for parameter in operation.spec.get("parameters", []):
            bounds = _bounds(parameter["schema"])
            if bounds is None:
                continue
            default = parameter["schema"].get("default", bounds.get("default"))
            wanted = f"`{parameter['name']}` ({_range(bounds)}" + (
                f", default {default:,})" if default is not None else ")"
            )
            if wanted not in _readme_item(api_section, operation):
                missing.append(f"{operation.name}: {wanted}")
    assert not missing, "README's HTTP API section lacks:\n" + "\n".join(missing)


def test_every_bounded_whole_number_field_of_a_body_has_its_range_in_the_readme(document, api_section):
    schemas = document["components"]["schemas"]
    missing = []
    for operation in documented_operations(document):
        for content in operation.spec.get("requestBody", {}).get("content", {}).values():
            for name, field in _fields(content["schema"], schemas).items():
                bounds = _bounds(field)
                if bounds and f"`{name}` ({_range(bounds)}" not in _flat(api_section):
                    missing.append(f"{operation.name}: `{name}` ({_range(bounds)}")
    assert not missing, "README's HTTP API section lacks:\n" + "\n".join(sorted(set(missing)))


def _fields(schema: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    """The top-level fields of a body schema, through references and alternatives."""
    if "$ref" in schema:
        return _fields(schemas[schema["$ref"].rsplit("/", 1)[1]], schemas)
    fields = dict(schema.get("properties", {}))
    for choice in schema.get("anyOf", []):
        fields.update(_fields(choice, schemas))
    return fields


def test_the_endpoints_api_body_limit_is_the_413_the_document_declares_and_the_readme_states(document, api_section):
    limit = f"{MAX_BODY_BYTES // 1024} KiB"
    with_body = [
        operation
        for operation in documented_operations(document)
        if operation.spec["tags"] == ["endpoints"] and operation.takes_body
    ]
    assert with_body
    for operation in with_body:
        assert limit in operation.declared[413]["description"], operation.name
    push_delivery = api_section[api_section.index("\n### Push delivery") :]
    assert f"A request body over {limit} is a `413` (`payload_too_large`)" in _flat(push_delivery)


def test_every_operation_declares_the_503_with_retry_after_that_the_readme_says_every_api_answers(
    document, api_section
):
    assert f"answers `503` with `Retry-After: {RETRY_AFTER_SECONDS}`" in _flat(api_section)
    assert "declares that `503`, with its `Retry-After`, for every operation" in _flat(api_section)
    for operation in documented_operations(document):
        assert operation.declared[503]["headers"]["Retry-After"]["required"], operation.name
