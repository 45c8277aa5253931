"""The REST API's OpenAPI 3.1 document, built from the pydantic models the handlers read.

Each service module lists its operations (``OPERATIONS``): method, path, the body and query
models its handler parses with ``web.validation``, the model it answers with, and the statuses
it can answer. The document is assembled from those lists and the models' JSON schemas, so it
cannot drift from what the handlers accept. The users service serves it at ``/api/openapi.json``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

#: Error statuses and what they mean, for the responses of every operation that can give them.
ERROR_STATUSES = {
    400: "Malformed request (e.g. a body that is not JSON)",
    401: "No valid credentials",
    403: "Not allowed for this role, or refused",
    404: "Not found in the caller's workspace",
    409: "Conflicts with existing data",
    413: "Request body too large",
    422: "Does not fit: per-field details",
    429: "Too many attempts: see Retry-After",
}
REF_TEMPLATE = "#/components/schemas/{model}"
BEARER = "bearer"
API_KEY = "api_key"


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    tag: str
    status: int = 200
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    errors: tuple[int, ...] = (400, 401, 404, 422)
    security: str | None = BEARER
    path_parameters: tuple[str, ...] = field(default=())
    body_required: bool = True
    #: What the summary cannot say in a line (e.g. that the effect is eventual).
    description: str = ""

    def parameters(self, schemas: dict[str, Any]) -> list[dict[str, Any]]:
        """Path and query parameters; models the query refers to go into ``schemas``."""
        names = self.path_parameters or tuple(re.findall(r"{(\w+)}", self.path))
        found: list[dict[str, Any]] = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in names
        ]
        if self.query is not None:
            schema = self.query.model_json_schema(ref_template=REF_TEMPLATE)
            for name, definition in schema.pop("$defs", {}).items():
                schemas.setdefault(name, definition)
            required = set(schema.get("required", []))
            for name, prop in schema.get("properties", {}).items():
                found.append(
                    {"name": name, "in": "query", "required": name in required, "schema": prop}
                )
        return found


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _collect(model: type[BaseModel], schemas: dict[str, Any]) -> None:
    schema = model.model_json_schema(ref_template=REF_TEMPLATE)
    for name, definition in schema.pop("$defs", {}).items():
        schemas.setdefault(name, definition)
    schemas[model.__name__] = schema


def document(operations: Iterable[Operation], *, version: str = "0.1.0") -> dict[str, Any]:
    schemas: dict[str, Any] = {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {
                        "code": {"type": "string"},
                        "message": {"type": "string"},
                        "details": {},
                    },
                }
            },
        }
    }
    paths: dict[str, dict[str, Any]] = {}
    for operation in operations:
        for model in (operation.body, operation.response):
            if model is not None:
                _collect(model, schemas)
        responses: dict[str, Any] = {}
        if operation.response is not None:
            responses[str(operation.status)] = {
                "description": "Success",
                "content": {"application/json": {"schema": _ref(operation.response)}},
            }
        else:
            responses[str(operation.status)] = {"description": "Success"}
        for status in operation.errors:
            responses[str(status)] = {
                "description": ERROR_STATUSES.get(status, "Error"),
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }
        entry: dict[str, Any] = {
            "summary": operation.summary,
            "tags": [operation.tag],
            "operationId": _operation_id(operation),
            "parameters": operation.parameters(schemas),
            "responses": responses,
            "security": [{operation.security: []}] if operation.security else [],
        }
        if operation.description:
            entry["description"] = operation.description
        if operation.body is not None:
            entry["requestBody"] = {
                "required": operation.body_required,
                "content": {"application/json": {"schema": _ref(operation.body)}},
            }
        paths.setdefault(operation.path, {})[operation.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": "Switchboard API", "version": version},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                BEARER: {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                API_KEY: {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
            },
        },
    }


def _operation_id(operation: Operation) -> str:
    words = re.sub(r"[{}]", "", operation.path).strip("/").replace("/", "_").replace("-", "_")
    return f"{operation.method.lower()}_{words}"


def all_operations(modules: Iterable[Mapping[str, Any]]) -> list[Operation]:
    """Every ``OPERATIONS`` list of the given service modules' namespaces."""
    found: list[Operation] = []
    for namespace in modules:
        found.extend(namespace.get("OPERATIONS", ()))
    return found
