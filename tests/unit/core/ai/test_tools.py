from __future__ import annotations

import json
from typing import Any

import pytest

from core.ai.tool_schema import SchemaLimits, ToolSchemas
from core.ai.tools import (
    BUILTINS,
    CLOSE,
    CONVERSATION_INFO,
    HANDOFF,
    TenantTool,
    check_headers,
    check_tool,
    enabled_names,
)
from core.errors import ValidationFailed
from core.security.egress import EgressPolicy, EgressRefused

SCHEMAS = ToolSchemas(SchemaLimits())
ORDER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"id": {"type": "integer"}, "note": {"type": "string"}},
    "required": ["id"],
}


def test_without_a_list_the_builtins_are_offered() -> None:
    assert sorted(enabled_names({})) == sorted([HANDOFF, CLOSE, CONVERSATION_INFO])
    assert set(enabled_names({"tools": None})) == set(BUILTINS)


def test_a_list_keeps_only_valid_names() -> None:
    chatbot = {"tools": ["lookup_order", HANDOFF, "has space", "", 7, "x" * 65, "a-b_9"]}
    assert enabled_names(chatbot) == ["lookup_order", HANDOFF, "a-b_9"]
    assert enabled_names({"tools": []}) == []


def test_an_object_schema_is_accepted() -> None:
    SCHEMAS.check(ORDER_SCHEMA)


@pytest.mark.parametrize(
    "schema",
    [
        None,
        [],
        {"type": "array", "items": {"type": "string"}},
        {"properties": {}},
        {"type": "object", "properties": {"id": {"type": "no-such-type"}}},
        {"type": "object", "required": "id"},
    ],
)
def test_schemas_that_are_not_object_schemas_are_refused(schema: object) -> None:
    with pytest.raises(ValidationFailed):
        SCHEMAS.check(schema)


def test_fitting_arguments_pass() -> None:
    SCHEMAS.validate(ORDER_SCHEMA, {"id": 7, "note": "gift"})


def test_arguments_that_do_not_fit_say_where_and_why() -> None:
    with pytest.raises(ValidationFailed) as raised:
        SCHEMAS.validate(ORDER_SCHEMA, {"note": 3})
    details = raised.value.details
    assert isinstance(details, list)
    by_field = {d["field"]: d["message"] for d in details}
    assert set(by_field) == {"(arguments)", "note"}
    assert "'id' is a required property" in by_field["(arguments)"]
    assert "is not of type 'string'" in by_field["note"]


def test_a_tool_document_becomes_a_tool() -> None:
    tool = TenantTool.from_document(
        {"name": "lookup_order", "url": "https://api.example.com/orders", "method": "get"}
    )
    assert tool.method == "GET"
    assert tool.parameters == {"type": "object"}
    assert tool.enabled is True


def test_an_unknown_method_is_refused() -> None:
    with pytest.raises(ValidationFailed, match="TRACE"):
        TenantTool.from_document(
            {"name": "t", "url": "https://api.example.com/", "method": "trace"}
        )


def test_the_model_sees_no_url_header_or_secret() -> None:
    tool = TenantTool.from_document(
        {
            "name": "lookup_order",
            "description": "Find an order",
            "url": "https://internal-url.example.com/orders",
            "parameters": ORDER_SCHEMA,
            "headers": {"X-Tenant": "plain-header-value"},
            "secret_headers": {"Authorization": "enc:v1:sealed-secret-value"},
        }
    )
    spec = tool.spec()
    assert spec["type"] == "function"
    assert set(spec["function"]) == {"name", "description", "parameters"}
    assert spec["function"]["parameters"] == ORDER_SCHEMA
    shown = json.dumps(spec)
    for hidden in ("internal-url", "X-Tenant", "plain-header-value", "Authorization", "sealed"):
        assert hidden not in shown


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/tool",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/tool",
        "http://10.0.0.1/tool",
        "http://0x7f000001/tool",
        "http://localhost/tool",  # a host that resolves to a loopback address
        "file:///etc/passwd",
        "http://user:pw@example.com/tool",
    ],
)
async def test_a_tool_pointing_inward_is_refused_when_saved(url: str) -> None:
    document = {"name": "lookup", "url": url, "parameters": {"type": "object"}}
    with pytest.raises(EgressRefused):
        await check_tool(document, EgressPolicy(), SCHEMAS)


async def test_a_tool_on_an_allowed_network_may_be_saved() -> None:
    document = {"name": "lookup", "url": "http://10.1.2.3:8080/tool", "method": "get"}
    tool = await check_tool(document, EgressPolicy.from_setting("10.1.0.0/16"), SCHEMAS)
    assert (tool.name, tool.method) == ("lookup", "GET")


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ({"name": "bad name!", "url": "http://10.1.2.3/"}, "name"),
        ({"name": "handoff_to_human", "url": "http://10.1.2.3/"}, "built-in"),
        ({"name": "lookup"}, "url"),
        ({"name": "lookup", "url": "http://10.1.2.3/", "parameters": {"type": "string"}}, "object"),
        ({"name": "lookup", "url": "http://10.1.2.3/", "method": "TRACE"}, "method"),
        ({"name": "lookup", "url": "http://10.1.2.3/", "headers": {"Host": "x"}}, "Host"),
        (
            {
                "name": "lookup",
                "url": "http://10.1.2.3/",
                "parameters": {
                    "type": "object",
                    "properties": {"a": {"type": "string", "pattern": "(a)\\1"}},
                },
            },
            "RE2",
        ),
    ],
)
async def test_a_malformed_tool_is_refused_when_saved(
    document: dict[str, Any], reason: str
) -> None:
    with pytest.raises(ValidationFailed, match=reason):
        await check_tool(document, EgressPolicy.from_setting("10.1.0.0/16"), SCHEMAS)


@pytest.mark.parametrize(
    ("headers", "secret_headers", "field"),
    [
        ({"Host": "internal"}, {}, "headers.Host"),
        ({"transfer-encoding": "chunked"}, {}, "headers.transfer-encoding"),
        ({}, {"Cookie": "sid=1"}, "secret_headers.Cookie"),
        ({"Connection": "close"}, {}, "headers.Connection"),
        ({"X-Forwarded-For": "10.0.0.1"}, {}, "headers.X-Forwarded-For"),
        ({"X-A": "one\r\nHost: internal"}, {}, "headers.X-A"),
        ({"idempotency-key": "mine"}, {}, "headers.idempotency-key"),
        ({"authorization": "a"}, {"Authorization": "b"}, "secret_headers.Authorization"),
    ],
)
def test_headers_a_tenant_may_not_set_are_refused_by_field(
    headers: dict[str, str], secret_headers: dict[str, str], field: str
) -> None:
    with pytest.raises(ValidationFailed) as raised:
        check_headers(headers, secret_headers)
    assert raised.value.details == [{"field": field, "message": raised.value.message}]


def test_ordinary_headers_pass() -> None:
    check_headers({"X-Shop": "shoes", "Accept": "application/json"}, {"Authorization": "enc"})


@pytest.mark.parametrize(
    ("parameters", "field"),
    [
        ({"type": "object", "$defs": {}}, "parameters.$defs"),
        ({"type": "object", "properties": {"a.b": {}}}, "parameters.properties.a.b"),
    ],
)
async def test_a_schema_key_the_database_cannot_store_is_refused_when_saved(
    parameters: dict[str, Any], field: str
) -> None:
    document = {"name": "lookup", "url": "http://10.1.2.3/", "parameters": parameters}
    with pytest.raises(ValidationFailed) as raised:
        await check_tool(document, EgressPolicy.from_setting("10.1.0.0/16"), SCHEMAS)
    details = raised.value.details
    assert isinstance(details, list)
    assert [d["field"] for d in details] == [field]
