"""The OpenAPI 3.1 document of the management API, made from its route table and models."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from http import HTTPStatus
from typing import Any

from pydantic import TypeAdapter
from pydantic.json_schema import JsonSchemaMode

from cargohold.http.api.models import Error
from cargohold.http.api.routing import Access, Route

OPENAPI_VERSION = "3.1.0"
SCHEMA_REF = "#/components/schemas/{model}"
JSON = "application/json"

# A reusable answer per error status: components.responses.<name>.
ERROR_RESPONSES: dict[int, tuple[str, dict[str, Any]]] = {
    400: ("InvalidInput", {}),
    401: (
        "Unauthenticated",
        {"WWW-Authenticate": {"schema": {"type": "string"}, "example": 'Basic realm="cargohold"'}},
    ),
    403: ("Forbidden", {}),
    404: ("NotFound", {}),
    409: ("Conflict", {}),
    429: (
        "TooManyAttempts",
        {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds to wait"}},
    ),
}
ERROR_DESCRIPTIONS = {
    400: "The request body or a value in it is invalid.",
    401: "No credentials, or wrong ones.",
    403: "The caller may not do this.",
    404: "No such resource, or one the caller may not see.",
    409: "It exists already.",
    429: "Too many failed sign-ins; try again after Retry-After seconds.",
}


def _schemas(
    routes: Sequence[Route],
) -> tuple[dict[tuple[Hashable, JsonSchemaMode], Any], dict[str, Any]]:
    inputs: list[tuple[Hashable, JsonSchemaMode, TypeAdapter[Any]]] = [
        ("error", "serialization", TypeAdapter(Error))
    ]
    for entry in routes:
        if entry.body is not None:
            inputs.append(((entry.operation_id, "body"), "validation", TypeAdapter(entry.body)))
        if entry.response is not None:
            inputs.append(
                ((entry.operation_id, "response"), "serialization", TypeAdapter(entry.response))
            )
    by_key, definitions = TypeAdapter.json_schemas(inputs, ref_template=SCHEMA_REF)
    schemas: dict[str, Any] = definitions.get("$defs", {})
    return by_key, schemas


def _operation(entry: Route, by_key: dict[tuple[Hashable, JsonSchemaMode], Any]) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": entry.operation_id,
        "summary": entry.summary,
        "description": f"Who may call it: {entry.access.value}.",
        "tags": [entry.path.strip("/").split("/")[0]],
    }
    if entry.parameters:
        operation["parameters"] = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in entry.parameters
        ]
    if entry.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {JSON: {"schema": by_key[((entry.operation_id, "body"), "validation")]}},
        }
    success: dict[str, Any] = {"description": HTTPStatus(entry.status).phrase}
    if entry.response is not None:
        schema = by_key[((entry.operation_id, "response"), "serialization")]
        success["content"] = {JSON: {"schema": schema}}
    responses: dict[str, Any] = {str(entry.status): success}
    for status in entry.error_statuses:
        name = ERROR_RESPONSES[status][0] if status in ERROR_RESPONSES else None
        if name is None:
            raise ValueError(f"route {entry.operation_id}: no documented answer for {status}")
        responses[str(status)] = {"$ref": f"#/components/responses/{name}"}
    operation["responses"] = responses
    if entry.access is Access.PUBLIC:
        operation["security"] = []
    return operation


def openapi_document(
    routes: Sequence[Route], *, prefix: str, title: str, version: str
) -> dict[str, Any]:
    by_key, schemas = _schemas(routes)
    paths: dict[str, dict[str, Any]] = {}
    for entry in routes:
        paths.setdefault(prefix + entry.path, {})[entry.method.lower()] = _operation(entry, by_key)
    error_schema = by_key[("error", "serialization")]
    responses = {
        name: {
            "description": ERROR_DESCRIPTIONS[status],
            "content": {JSON: {"schema": error_schema}},
            **({"headers": headers} if headers else {}),
        }
        for status, (name, headers) in ERROR_RESPONSES.items()
    }
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": title,
            "version": version,
            "description": (
                "Projects, repositories, users, robot accounts and project members. Sign in"
                " with Basic credentials (a user, or a robot `sa$<name>` with its API key) or"
                " a bearer token from /v2/token; what the caller may do is decided by its"
                " current roles and grants, not by the token's scopes."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": responses,
            "securitySchemes": {
                "basic": {"type": "http", "scheme": "basic"},
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            },
        },
        "security": [{"basic": []}, {"bearer": []}],
    }
