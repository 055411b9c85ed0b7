"""The OpenAPI document, made from the route table and the models."""

from __future__ import annotations

import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from cargohold.http.api import PREFIX, ROUTES, document
from cargohold.http.api.models import Repository, RepositoryCreate
from cargohold.http.api.openapi import openapi_document
from cargohold.http.api.routing import Access, Call, Route, route, route_with_body


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def test_the_document_is_valid_openapi_3_1() -> None:
    doc = document()
    assert doc["openapi"] == "3.1.0"
    validate(doc)
    json.dumps(doc)  # plain JSON, nothing else


def test_every_reference_resolves() -> None:
    doc = document()
    refs = _refs(doc)
    assert refs
    for ref in refs:
        _resolve(doc, ref)


def test_every_schema_is_valid_json_schema() -> None:
    for name, schema in document()["components"]["schemas"].items():
        assert isinstance(schema, dict), name
        Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("entry", ROUTES, ids=lambda entry: entry.operation_id)
def test_every_route_is_documented_with_its_models(entry: Route) -> None:
    doc = document()
    operation = doc["paths"][PREFIX + entry.path][entry.method.lower()]
    assert operation["operationId"] == entry.operation_id
    assert operation["summary"] == entry.summary
    assert [p["name"] for p in operation.get("parameters", [])] == entry.parameters
    if entry.body is None:
        assert "requestBody" not in operation
    else:
        schema = operation["requestBody"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": f"#/components/schemas/{entry.body.__name__}"}
    success = operation["responses"][str(entry.status)]
    assert ("content" in success) is (entry.response is not None)
    for status in entry.error_statuses:
        answer = _resolve(doc, operation["responses"][str(status)]["$ref"])
        assert answer["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Error"
        }
    if entry.access is Access.PUBLIC:
        assert operation["security"] == []
    else:
        assert "security" not in operation  # the document's: Basic or Bearer


def test_the_contract_fields_are_in_the_schemas() -> None:
    schemas = document()["components"]["schemas"]
    save_fields = {
        "project",
        "name",
        "format",
        "repository_type",
        "remote_url",
        "cache_ttl",
        "flat_alias_prefix",
        "is_catch_all",
        "host_name",
        "anonymous_read",
    }
    # Upstream credentials go in, and only whether they are set comes out.
    credentials = {"upstream_username", "upstream_password"}
    # Cargohold's own: what garbage collection does with untagged manifests.
    policy = {"untagged_manifests"}
    assert set(schemas["RepositoryCreate"]["properties"]) == save_fields | credentials | policy
    assert set(schemas["Repository"]["properties"]) == save_fields | policy | {
        "created_at",
        "has_upstream_credentials",
        "cleanup_policy",
        "cache_max_age_days",
        "cache_max_bytes",
    }
    assert set(schemas["RepositoryCreate"]["required"]) == {"project", "name"}
    assert schemas["RepositoryCreate"]["additionalProperties"] is False
    assert set(schemas["Project"]["properties"]) == {
        "name",
        "anonymous_read",
        "created_at",
        "quota_bytes",
        "usage_bytes",
    }
    assert set(schemas["User"]["properties"]) == {"name", "is_admin", "disabled", "created_at"}
    assert set(schemas["CreatedUser"]["properties"]) == {
        "name",
        "is_admin",
        "disabled",
        "created_at",
        "password",
    }
    assert set(schemas["Robot"]["properties"]) == {
        "name",
        "description",
        "expires_at",
        "disabled",
        "created_at",
        "last_used_at",
        "grants",
    }
    assert set(schemas["RobotWithKey"]["properties"]) == set(schemas["Robot"]["properties"]) | {
        "key"
    }
    assert set(schemas["Grant"]["properties"]) == {"project", "repository", "actions"}
    assert set(schemas["MemberRole"]["properties"]["role"]["enum"]) == {
        "reader",
        "developer",
        "maintainer",
        "admin",
    }
    for name in schemas:
        assert "hash" not in json.dumps(schemas[name]), name


def test_a_document_of_a_small_table() -> None:
    async def make(call: Call, body: RepositoryCreate) -> Repository:
        raise NotImplementedError

    async def show(call: Call) -> list[Repository]:
        raise NotImplementedError

    table = [
        route_with_body(
            "POST",
            "/r",
            make,
            body=RepositoryCreate,
            summary="make one",
            response=Repository,
            status=201,
            access=Access.ADMIN,
            errors=(409,),
        ),
        route(
            "GET", "/r/{id}", show, summary="show", response=list[Repository], access=Access.USER
        ),
    ]
    doc = openapi_document(table, prefix="/x", title="t", version="1")
    validate(doc)
    assert set(doc["paths"]) == {"/x/r", "/x/r/{id}"}
    post = doc["paths"]["/x/r"]["post"]
    assert set(post["responses"]) == {"201", "400", "401", "403", "409", "429"}
    assert post["tags"] == ["r"]
    get = doc["paths"]["/x/r/{id}"]["get"]
    assert get["responses"]["200"]["content"]["application/json"]["schema"] == {
        "type": "array",
        "items": {"$ref": "#/components/schemas/Repository"},
    }
    assert get["parameters"] == [
        {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
    ]
    assert set(doc["components"]["schemas"]) == {
        "Error",
        "Repository",
        "RepositoryCreate",
        "CleanupPolicyBody",
    }
