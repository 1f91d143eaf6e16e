"""A request for every operation of the OpenAPI document, made from the document itself: the tests that
call each operation (tests/api/test_outages.py, test_openapi_answers.py) so call one added later too,
and an operation that takes a body this module has none for fails them until it is given one here."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tests.support.media_uploads import local
from webhook_service.database.tables import MediaUpload
from webhook_service.runtime import Runtime

# Fixed, not random: pytest-xdist requires every worker to collect the same test ids.
SOME_ID = "5b0f6c1e-8a9d-4f4e-9b7a-3c2d1e0f9a8b"
# A valid JSON body for each operation that takes one and has no example in the document.
BODIES: dict[str, Any] = {
    "createEndpoint": {"url": "https://93.184.216.34/hook"},  # a public address: no name to resolve
    "updateEndpoint": {"description": "CRM"},
    "replayEndpointEvents": {"eventIds": ["1"]},
}
# The operation whose URL carries its own signature instead of credentials.
STABLE_MEDIA_URL = "followStableMediaUrl"
_PATH_VARIABLE = re.compile(r"\{[^{}]+\}")


@dataclass(frozen=True)
class DocumentedOperation:
    method: str
    path: str  # as the document writes it: /api/v1/messages/{messageId}
    spec: dict[str, Any]  # the document's operation object

    @property
    def id(self) -> str:
        return str(self.spec["operationId"])

    @property
    def name(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def public(self) -> bool:
        return self.spec.get("security") == []

    @property
    def declared(self) -> dict[int, dict[str, Any]]:
        return {int(status): answer for status, answer in self.spec["responses"].items()}

    @property
    def takes_body(self) -> bool:
        return "requestBody" in self.spec

    @property
    def query_parameters(self) -> list[dict[str, Any]]:
        return [parameter for parameter in self.spec.get("parameters", []) if parameter["in"] == "query"]


def documented_operations(document: dict[str, Any]) -> list[DocumentedOperation]:
    return [
        DocumentedOperation(method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]


def url_of(operation: DocumentedOperation, runtime: Runtime) -> str:
    """The operation's URL with SOME_ID for every path variable; the stable media URL correctly signed, so
    that the request gets as far as looking the upload up."""
    if operation.id == STABLE_MEDIA_URL:
        return local(runtime.links.stable_url(MediaUpload(id=SOME_ID, created_at=datetime.now(UTC))).url)
    return _PATH_VARIABLE.sub(SOME_ID, operation.path)


def body_of(operation: DocumentedOperation) -> Any:
    """A valid JSON body for the operation: the document's example, else this module's; None when it takes
    no body."""
    if not operation.takes_body:
        return None
    example = operation.spec["requestBody"]["content"].get("application/json", {}).get("example")
    if example is not None:
        return example
    assert operation.id in BODIES, f"{operation.name}: give tests/api/document_requests.py a body for it"
    return BODIES[operation.id]


def declared_problems(operation: DocumentedOperation, response: Any) -> list[str]:
    """How `response` differs from what the document declares for it: an undeclared status, a required
    header missing, an error body that is not the Error schema's `{"error": {"code", "message"}}`."""
    answer = operation.declared.get(response.status_code)
    if answer is None:
        return [f"{operation.name}: {response.status_code} is not declared (declared: {sorted(operation.declared)})"]
    problems = [
        f"{operation.name}: {response.status_code} without its declared header {name}"
        for name, header in answer.get("headers", {}).items()
        if header.get("required") and name not in response.headers
    ]
    if response.status_code >= 400:
        schema = answer.get("content", {}).get("application/json", {}).get("schema")
        if schema != {"$ref": "#/components/schemas/Error"}:
            problems.append(f"{operation.name}: {response.status_code} is not declared with the Error schema")
        error = (response.get_json(silent=True) or {}).get("error")
        if not (isinstance(error, dict) and error.get("code") and error.get("message")):
            problems.append(f"{operation.name}: {response.status_code} answered {response.get_data()[:200]!r}")
    return problems
