"""Issue 14, finding 2: a tool's JSON-schema patterns are the tenant's own regular expressions.

On a backtracking engine ``^(a+)+$`` against 40 a's and a '!' runs for hours on the worker's
event loop, and its record, never acked, is redelivered to stall the next worker too: one
tenant stops every tenant's conversations. Here the tool is saved through the chatbots service
and called through a real worker's function-call stage; each call must come back with its
verdict within a bound the old engine could never meet. Patterns RE2 cannot run and oversized
schemas are refused on save; a tool stored before those rules (inserted straight into MongoDB)
still cannot stall the worker.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from core.ids import new_id
from core.settings import Settings
from streams.contract import FUNCTION_CALLS, FUNCTION_RESULTS
from streams.records import FunctionResult, decode, encode
from tests.fakes.tool_endpoint import ToolEndpoint
from tests.integration.api_harness import Db, Tenant, new_tenant
from tests.integration.pipeline_harness import (
    Conversation,
    Worker,
    create_application,
    insert_documents,
    read_topic,
    running,
    send_raw,
)
from web import chatbots

Client = TestClient[web.Request, web.Application]
TOOLS = "/api/chatbots/tools"
PUBLIC_URL = "https://93.184.215.14/x"
NESTED_GROUPS = "^(a+)+$"
#: Hours on Python's re (about 1 s at 24 a's, four times more per two a's); microseconds on RE2.
CATASTROPHIC = "a" * 40 + "!"
#: Far longer than RE2 needs, far shorter than the old engine's hours.
WITHIN_S = 60


def _code_schema(pattern: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"code": {"type": "string", "pattern": pattern}},
        "required": ["code"],
    }


@pytest.fixture(scope="module")
def pattern_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    # The tenant endpoint listens on loopback, which only an allow-list opens.
    worker = Worker(
        tmp_path_factory.mktemp("patterns"),
        "pattern-worker",
        env={"SWITCHBOARD_TOOL_ALLOW_NETWORKS": "127.0.0.1/32"},
    )
    with running(worker):
        yield worker


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[Client]:
    opened = settings.model_copy(update={"tool_allow_networks": "127.0.0.1/32"})
    async with TestClient(TestServer(chatbots.create_app(opened))) as client:
        yield client


async def _save(client: Client, tenant: Tenant, **fields: Any) -> Any:
    return await client.post(TOOLS, json={"url": PUBLIC_URL, **fields}, headers=tenant.headers)


async def _call_all(
    settings: Settings, workspace: str, calls: list[tuple[str, dict[str, Any]]]
) -> list[FunctionResult]:
    """Each call through the worker's function-call stage, in order; their results."""
    application = await create_application(
        settings, workspace, chatbot={"tools": sorted({name for name, _ in calls})}
    )
    conversation = Conversation(workspace, application, new_id("user"))
    records = [conversation.function_call(name, args, "rq_probe") for name, args in calls]
    for record in records:
        await send_raw(settings, FUNCTION_CALLS, conversation.id, encode(record))
    found = await read_topic(
        settings, FUNCTION_RESULTS, {conversation.id}, within_s=WITHIN_S, want=len(records)
    )
    results = {r.call_id: r for r in (decode(f.value) for f in found)}
    assert len(results) == len(records), "the function-call stage did not answer every call"
    ordered = [results[record.call_id] for record in records]
    assert all(isinstance(r, FunctionResult) for r in ordered)
    return ordered


async def test_a_backtracking_pattern_saved_then_called_gives_its_verdict(
    client: Client, settings: Settings, pattern_worker: Worker
) -> None:
    tenant = new_tenant(settings)
    async with ToolEndpoint() as endpoint:
        saved = await _save(
            client,
            tenant,
            name="check_code",
            url=endpoint.url("/codes"),
            parameters=_code_schema(NESTED_GROUPS),
            secret_headers={"Authorization": f"Bearer {endpoint.token}"},
        )
        assert saved.status == 201, await saved.text()
        refused, fitting = await _call_all(
            settings,
            tenant.workspace_id,
            [("check_code", {"code": CATASTROPHIC}), ("check_code", {"code": "aaaa"})],
        )
    assert refused.result is None
    assert "do not fit the tool's schema" in refused.error
    assert f"does not match '{NESTED_GROUPS}'" in refused.error
    assert (fitting.error, fitting.result) == ("", {"status": 200, "body": {"ok": True}})
    assert [seen.body for seen in endpoint.requests] == [{"code": "aaaa"}]


async def test_a_tool_stored_before_the_rules_cannot_stall_the_worker(
    settings: Settings, pattern_worker: Worker
) -> None:
    workspace = new_id("ws")
    async with ToolEndpoint() as endpoint:
        stored = {
            "nested": _code_schema(NESTED_GROUPS),
            "backreference": _code_schema("^(a+)+\\1$"),
        }
        await insert_documents(
            settings,
            "tools",
            *[
                {
                    "_id": new_id("tool"),
                    "workspace_id": workspace,
                    "name": name,
                    "url": endpoint.url(f"/{name}"),
                    "parameters": schema,
                    "enabled": True,
                }
                for name, schema in stored.items()
            ],
        )
        nested, backreference = await _call_all(
            settings,
            workspace,
            [(name, {"code": CATASTROPHIC}) for name in stored],
        )
    assert f"does not match '{NESTED_GROUPS}'" in nested.error
    assert "RE2" in backreference.error
    assert endpoint.requests == []


@pytest.mark.parametrize(
    ("parameters", "field"),
    [
        (_code_schema("^(a+)\\1$"), "parameters.properties.code.pattern"),
        (_code_schema("^(?=a)a+$"), "parameters.properties.code.pattern"),
        (_code_schema("(?<!b)a"), "parameters.properties.code.pattern"),
        (
            {"type": "object", "patternProperties": {"^(x)\\1$": {}}},
            "parameters.patternProperties.^(x)\\1$",
        ),
    ],
)
async def test_patterns_re2_cannot_run_are_refused_on_save(
    client: Client, settings: Settings, db: Db, parameters: dict[str, Any], field: str
) -> None:
    tenant = new_tenant(settings)
    response = await _save(client, tenant, name="probe", parameters=parameters)
    assert response.status == 422, await response.text()
    (detail,) = (await response.json())["error"]["details"]
    assert detail["field"] == field
    assert "RE2" in detail["message"]
    assert await db["tools"].count_documents({"workspace_id": tenant.workspace_id}) == 0


def _nested(levels: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"p": schema}}
    return schema


@pytest.mark.parametrize(
    ("parameters", "says"),
    [
        ({"type": "object", "description": "x" * (64 * 1024)}, "bytes, over"),
        (_nested(20), "deeper than"),  # 41 levels: within the body limit, past the cap
        (_code_schema("a" * 5_000), "at most"),
    ],
)
async def test_an_oversized_schema_is_refused_on_save(
    client: Client, settings: Settings, db: Db, parameters: dict[str, Any], says: str
) -> None:
    tenant = new_tenant(settings)
    response = await _save(client, tenant, name="probe", parameters=parameters)
    assert response.status == 422, (await response.text())[:200]
    (detail,) = (await response.json())["error"]["details"]
    assert detail["field"].startswith("parameters")
    assert says in detail["message"]
    saved = await _save(client, tenant, name="probe", parameters=_code_schema("^[a-z]+$"))
    patched = await client.patch(
        f"{TOOLS}/{(await saved.json())['id']}",
        json={"parameters": parameters},
        headers=tenant.headers,
    )
    assert patched.status == 422
