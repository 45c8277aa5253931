from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from core.ai.http_tools import MAX_RESULT_CHARS, ToolFailed, call_http_tool
from core.ai.tool_schema import SchemaLimits, ToolSchemas
from core.ai.tools import TenantTool
from core.errors import ValidationFailed
from core.security.egress import EgressClient, EgressPolicy
from core.security.secrets import SecretBox
from tests.fakes.tool_endpoint import ToolEndpoint

TOKEN = "tool-secret-token"
BOX = SecretBox("test-encryption-key")
SCHEMAS = ToolSchemas(SchemaLimits())
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "note": {"type": "string"},
    },
    "required": ["id"],
}


def tool_for(endpoint: ToolEndpoint, method: str = "POST") -> TenantTool:
    return TenantTool(
        name="lookup_order",
        description="Find an order",
        url=endpoint.url("/orders"),
        method=method,
        parameters=SCHEMA,
        headers={"X-Tenant": "acme"},
        secret_headers={"Authorization": BOX.seal(f"Bearer {TOKEN}")},
    )


@pytest.fixture
async def endpoint() -> AsyncIterator[ToolEndpoint]:
    async with ToolEndpoint(token=TOKEN) as served:
        yield served


@pytest.fixture
async def egress() -> AsyncIterator[EgressClient]:
    client = EgressClient(EgressPolicy.from_setting("127.0.0.1/32"))
    try:
        yield client
    finally:
        await client.close()


async def test_post_sends_the_arguments_as_json(
    endpoint: ToolEndpoint, egress: EgressClient
) -> None:
    endpoint.answer = {"order": 7, "state": "shipped"}
    arguments = {"id": 7, "tags": ["gift"]}
    answer = await call_http_tool(tool_for(endpoint), arguments, "call-1", egress, BOX, SCHEMAS)
    assert answer == {"status": 200, "body": {"order": 7, "state": "shipped"}}
    (seen,) = endpoint.requests
    assert (seen.method, seen.path) == ("POST", "/orders")
    assert seen.body == arguments
    assert seen.query == {}


async def test_get_sends_the_arguments_as_query_parameters(
    endpoint: ToolEndpoint, egress: EgressClient
) -> None:
    arguments = {"id": 7, "tags": ["a", "b"], "note": "rush"}
    await call_http_tool(tool_for(endpoint, "GET"), arguments, "call-1", egress, BOX, SCHEMAS)
    (seen,) = endpoint.requests
    assert seen.method == "GET"
    assert seen.body is None
    assert seen.query == {"id": "7", "tags": json.dumps(["a", "b"]), "note": "rush"}


async def test_headers_secrets_and_idempotency_key_arrive(
    endpoint: ToolEndpoint, egress: EgressClient
) -> None:
    await call_http_tool(tool_for(endpoint), {"id": 7}, "call-42", egress, BOX, SCHEMAS)
    (seen,) = endpoint.requests
    assert seen.headers["Authorization"] == f"Bearer {TOKEN}"
    assert seen.headers["X-Tenant"] == "acme"
    assert seen.headers["Idempotency-Key"] == "call-42"


async def test_an_error_status_fails_the_call_with_the_status(
    endpoint: ToolEndpoint, egress: EgressClient
) -> None:
    endpoint.status, endpoint.answer = 503, {"error": "down for maintenance"}
    with pytest.raises(ToolFailed, match="503") as raised:
        await call_http_tool(tool_for(endpoint), {"id": 7}, "call-1", egress, BOX, SCHEMAS)
    assert raised.value.details == {"status": 503, "body": {"error": "down for maintenance"}}


async def test_arguments_that_do_not_fit_make_no_request(
    endpoint: ToolEndpoint, egress: EgressClient
) -> None:
    with pytest.raises(ValidationFailed):
        await call_http_tool(tool_for(endpoint), {"id": "seven"}, "call-1", egress, BOX, SCHEMAS)
    assert endpoint.requests == []


async def test_a_refused_address_is_never_contacted(endpoint: ToolEndpoint) -> None:
    guarded = EgressClient(EgressPolicy())
    try:
        with pytest.raises(ToolFailed, match="refused"):
            await call_http_tool(tool_for(endpoint), {"id": 7}, "call-1", guarded, BOX, SCHEMAS)
    finally:
        await guarded.close()
    assert endpoint.requests == []


async def test_a_large_json_answer_comes_back_as_cut_text(
    endpoint: ToolEndpoint, egress: EgressClient
) -> None:
    endpoint.answer = {"items": ["x" * 100] * (MAX_RESULT_CHARS // 50)}
    answer = await call_http_tool(tool_for(endpoint), {"id": 7}, "call-1", egress, BOX, SCHEMAS)
    body = answer["body"]
    assert isinstance(body, str)
    assert len(body) == MAX_RESULT_CHARS
    assert body.startswith('{"items": ["xxx')
