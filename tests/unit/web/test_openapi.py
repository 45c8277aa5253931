"""The OpenAPI document is valid OpenAPI 3.1 and says what the models say."""

from __future__ import annotations

from openapi_spec_validator import validate
from pydantic import BaseModel, Field

from web.openapi import API_KEY, Operation, document


class Address(BaseModel):
    city: str


class NewThing(BaseModel):
    name: str = Field(min_length=1, max_length=40)
    address: Address | None = None


class Thing(BaseModel):
    id: str
    name: str


class Page(BaseModel):
    limit: int = Field(default=20, ge=1, le=100)
    cursor: str | None = None


OPERATIONS = [
    Operation("POST", "/api/things", "Create a thing", "things", status=201, body=NewThing,
              response=Thing),
    Operation("GET", "/api/things", "List things", "things", query=Page, response=Thing),
    Operation("DELETE", "/api/things/{thing_id}", "Delete a thing", "things", status=204),
    Operation("POST", "/api/things/{thing_id}/ping", "Ping", "things", security=API_KEY),
]  # fmt: skip


def test_the_document_is_valid_openapi() -> None:
    validate(document(OPERATIONS))  # raises on any violation of the OpenAPI 3.1 schema


def test_models_parameters_and_errors_are_described() -> None:
    doc = document(OPERATIONS)
    create = doc["paths"]["/api/things"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/NewThing"
    }
    assert set(create["responses"]) == {"201", "400", "401", "404", "422"}
    schemas = doc["components"]["schemas"]
    assert schemas["NewThing"]["properties"]["name"]["maxLength"] == 40
    assert "Address" in schemas  # nested models are lifted into components
    listing = doc["paths"]["/api/things"]["get"]
    assert {p["name"]: p["in"] for p in listing["parameters"]} == {
        "limit": "query",
        "cursor": "query",
    }
    delete = doc["paths"]["/api/things/{thing_id}"]["delete"]
    assert delete["parameters"][0] == {
        "name": "thing_id", "in": "path", "required": True, "schema": {"type": "string"}
    }  # fmt: skip
    assert doc["paths"]["/api/things/{thing_id}/ping"]["post"]["security"] == [{API_KEY: []}]
