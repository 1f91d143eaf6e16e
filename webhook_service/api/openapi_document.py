"""An OpenAPI 3.1 document generated from pydantic models. Each operation names the models of its path
and query parameters, of its request bodies and of its answers: a parameter model's fields become the
operation's parameters, and body and answer models become components. Pydantic writes JSON Schema
2020-12, which is what OpenAPI 3.1 schemas are."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, JsonSchemaValue, models_json_schema
from pydantic_core import core_schema

Schema = dict[str, Any]

OPENAPI_VERSION = "3.1.0"
_COMPONENT_REF = "#/components/schemas/{model}"
_MODE: JsonSchemaMode = "validation"


@dataclass(frozen=True)
class Answer:
    """One documented response: its description, the model of its JSON body if it has one, and its
    headers (name to OpenAPI header object)."""

    description: str
    model: type[BaseModel] | None = None
    headers: Mapping[str, Schema] = field(default_factory=dict)


@dataclass(frozen=True)
class Operation:
    method: str
    path: str  # in OpenAPI's form: /api/v1/messages/{messageId}
    operation_id: str
    tag: str
    summary: str
    answers: Mapping[int, Answer]
    path_parameters: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    bodies: Mapping[str, type[BaseModel]] = field(default_factory=dict)  # media type -> model
    body_examples: Mapping[str, Any] = field(default_factory=dict)  # media type -> example
    description: str | None = None
    public: bool = False  # no credentials: the document's security does not apply


class DocumentSchemas(GenerateJsonSchema):
    """Pydantic's JSON schemas less what is noise in a document: a title on every property (the name says
    it) and a null default (an optional parameter's absence says it)."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        json_schema = super().default_schema(schema)
        if "default" in json_schema and json_schema["default"] is None:
            del json_schema["default"]
        return json_schema


def build_document(*, info: Schema, security_schemes: Mapping[str, Schema], operations: Sequence[Operation]) -> Schema:
    """The document. Operations use every security scheme (any one of them will do) unless public."""
    models = list(
        dict.fromkeys(
            model
            for operation in operations
            for model in (*operation.bodies.values(), *(answer.model for answer in operation.answers.values()))
            if model is not None
        )
    )
    references, definitions = models_json_schema(
        [(model, _MODE) for model in models], ref_template=_COMPONENT_REF, schema_generator=DocumentSchemas
    )
    refs: dict[Any, Schema] = {model: reference for (model, _), reference in references.items()}
    paths: dict[str, dict[str, Schema]] = {}
    for operation in operations:
        paths.setdefault(operation.path, {})[operation.method.lower()] = _operation(operation, refs)
    return {
        "openapi": OPENAPI_VERSION,
        "info": info,
        "security": [{name: []} for name in security_schemes],
        "paths": paths,
        "components": {"securitySchemes": dict(security_schemes), "schemas": definitions.get("$defs", {})},
    }


def _parameters(model: type[BaseModel], location: str) -> list[Schema]:
    """A model's fields as OpenAPI parameters `in` path or query, by the names a request uses (aliases)."""
    schema = model.model_json_schema(schema_generator=DocumentSchemas)
    if "$defs" in schema:
        raise ValueError(f"{model.__name__}: a parameter must be a plain value, not a model or an enum class")
    required = set(schema.get("required", ()))
    documented = []
    for name, property_schema in schema.get("properties", {}).items():
        value_schema = dict(property_schema)
        parameter: Schema = {"name": name, "in": location, "required": location == "path" or name in required}
        description = value_schema.pop("description", None)
        if description:
            parameter["description"] = description
        if value_schema.get("type") == "array":
            # This API's lists are comma-separated (type=a,b), not the parameter repeated (type=a&type=b).
            parameter["explode"] = False
        parameter["schema"] = allowing_empty(value_schema) if location == "query" else value_schema
        documented.append(parameter)
    return documented


def allowing_empty(schema: Schema) -> Schema:
    """A query parameter's schema that also allows the empty value: in this API `?after=` is the
    parameter left out (api/parameters.py), and the document must not call it invalid."""
    constraints = set(schema) - {"type", "default", "title", "description", "examples"}
    if schema.get("type") == "string" and not constraints:
        return schema  # any string, "" included
    alternatives = {name: value for name, value in schema.items() if name != "default"}
    choices = alternatives["anyOf"] if set(alternatives) == {"anyOf"} else [alternatives]
    either: Schema = {"anyOf": [*choices, {"type": "string", "maxLength": 0}]}
    if "default" in schema:
        either["default"] = schema["default"]
    return either


def _operation(operation: Operation, refs: Mapping[type[BaseModel], Schema]) -> Schema:
    document: Schema = {"operationId": operation.operation_id, "tags": [operation.tag], "summary": operation.summary}
    if operation.description:
        document["description"] = operation.description
    if operation.public:
        document["security"] = []
    documented = [
        *(_parameters(operation.path_parameters, "path") if operation.path_parameters else []),
        *(_parameters(operation.query, "query") if operation.query else []),
    ]
    if documented:
        document["parameters"] = documented
    if operation.bodies:
        document["requestBody"] = _request_body(operation, refs)
    document["responses"] = {str(status): _answer(answer, refs) for status, answer in operation.answers.items()}
    return document


def _request_body(operation: Operation, refs: Mapping[type[BaseModel], Schema]) -> Schema:
    content: dict[str, Schema] = {}
    for media_type, model in operation.bodies.items():
        content[media_type] = {"schema": refs[model]}
        if media_type in operation.body_examples:
            content[media_type]["example"] = operation.body_examples[media_type]
    return {"required": True, "content": content}


def _answer(answer: Answer, refs: Mapping[type[BaseModel], Schema]) -> Schema:
    response: Schema = {"description": answer.description}
    if answer.headers:
        response["headers"] = dict(answer.headers)
    if answer.model is not None:
        response["content"] = {"application/json": {"schema": refs[answer.model]}}
    return response
