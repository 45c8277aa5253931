"""The chatbots API (chatbots and tenant tools) against the real FerretDB and Redis.

Operators are signed in with access tokens minted directly, one fresh workspace per tenant.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from core.ai.tools import ToolDirectory
from core.cached.applications import ApplicationDirectory
from core.clients.database import Document
from core.security.secrets import PREFIX, SecretBox
from core.settings import Settings
from tests.integration.api_harness import Db, Tenant, new_tenant
from web import chatbots

Client = TestClient[web.Request, web.Application]
API = "/api/chatbots"
TOOLS = "/api/chatbots/tools"
PUBLIC_URL = "https://93.184.215.14/x"
MODEL_KEY = "sk-live-very-secret-model-key"
#: A public address: a chatbot's own model URL passes the egress guard without DNS.
MODEL_URL = "https://93.184.215.14/v1"


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[Client]:
    async with TestClient(TestServer(chatbots.create_app(settings))) as client:
        yield client


async def _chatbot(client: Client, tenant: Tenant, **fields: Any) -> Document:
    body = {
        "name": "Helper",
        "instructions": "Be brief.",
        "fallback_reply": "Sorry, try again.",
        "llm": {
            "base_url": MODEL_URL,
            "model": "small-1",
            "api_key": MODEL_KEY,
            "temperature": 0.2,
            "max_tokens": 300,
        },
        **fields,
    }
    response = await client.post(API, json=body, headers=tenant.headers)
    assert response.status == 201, await response.text()
    created: Document = await response.json()
    return created


async def _tool(client: Client, tenant: Tenant, **fields: Any) -> Document:
    body = {
        "name": "order_status",
        "description": "The status of an order",
        "url": PUBLIC_URL,
        "method": "GET",
        "parameters": {
            "type": "object",
            "properties": {"order_id": {"type": "string"}},
            "required": ["order_id"],
        },
        "headers": {"Accept": "application/json"},
        "secret_headers": {"Authorization": "Bearer tool-secret"},
        **fields,
    }
    response = await client.post(TOOLS, json=body, headers=tenant.headers)
    assert response.status == 201, await response.text()
    created: Document = await response.json()
    return created


async def test_a_chatbot_is_created_read_updated_and_deleted_and_its_key_never_returned(
    client: Client, settings: Settings, db: Db
) -> None:
    tenant = new_tenant(settings)
    created = await _chatbot(client, tenant, tools=["handoff_to_human"], max_tool_rounds=2)
    assert created["id"].startswith("bot_")
    assert created["llm"] == {
        "base_url": MODEL_URL,
        "model": "small-1",
        "temperature": 0.2,
        "max_tokens": 300,
        "has_api_key": True,
    }
    assert (created["tools"], created["max_tool_rounds"]) == (["handoff_to_human"], 2)
    stored = await db["chatbots"].find_one({"_id": created["id"]})
    assert stored is not None
    assert stored["workspace_id"] == tenant.workspace_id
    sealed = stored["llm"]["api_key"]
    assert sealed.startswith(PREFIX)
    assert MODEL_KEY not in json.dumps(stored, default=str)
    assert SecretBox(settings.encryption_key.get_secret_value()).open(sealed) == MODEL_KEY

    url = f"{API}/{created['id']}"
    got = await client.get(url, headers=tenant.headers)
    listed = await client.get(API, headers=tenant.headers)
    assert await got.json() == created
    assert [c["id"] for c in (await listed.json())["chatbots"]] == [created["id"]]
    for response in (got, listed):
        assert MODEL_KEY not in await response.text()
        assert PREFIX not in await response.text()

    patch = {"instructions": "Be kind.", "llm": {"temperature": 0.9}, "max_tool_rounds": None}
    updated = await (await client.patch(url, json=patch, headers=tenant.headers)).json()
    assert updated["instructions"] == "Be kind."
    assert "max_tool_rounds" not in updated
    assert updated["llm"]["temperature"] == 0.9
    assert updated["llm"]["model"] == "small-1"
    assert updated["llm"]["has_api_key"] is True
    keyless = await client.patch(url, json={"llm": {"api_key": None}}, headers=tenant.headers)
    assert keyless.status == 422, "its own base_url needs its own key"
    assert (await keyless.json())["error"]["code"] == "model_refused"
    cleared = await client.patch(
        url, json={"llm": {"api_key": None, "base_url": None}}, headers=tenant.headers
    )
    assert (await cleared.json())["llm"]["has_api_key"] is False
    stored = await db["chatbots"].find_one({"_id": created["id"]})
    assert stored is not None
    assert "api_key" not in stored["llm"]

    assert (await client.delete(url, headers=tenant.headers)).status == 204
    assert (await client.get(url, headers=tenant.headers)).status == 404


async def test_bad_chatbots_are_refused_and_nothing_is_stored(
    client: Client, settings: Settings, db: Db
) -> None:
    tenant = new_tenant(settings)
    malformed = await client.post(
        API, data=b"{nope", headers={**tenant.headers, "Content-Type": "application/json"}
    )
    assert malformed.status == 400
    assert (await malformed.json())["error"]["code"] == "malformed_json"
    wrong = await client.post(
        API,
        json={"name": 5, "tools": "all", "llm": {"temperature": "hot", "base_url": "ftp://x"}},
        headers=tenant.headers,
    )
    assert wrong.status == 422
    fields = {d["field"] for d in (await wrong.json())["error"]["details"]}
    assert fields == {"name", "tools", "llm.temperature", "llm.base_url"}
    unknown_tool = await client.post(
        API, json={"name": "x", "tools": ["close_conversation", "nope"]}, headers=tenant.headers
    )
    assert unknown_tool.status == 422
    assert (await unknown_tool.json())["error"]["details"][0]["field"] == "tools.1"
    assert await db["chatbots"].count_documents({"workspace_id": tenant.workspace_id}) == 0

    created = await _chatbot(client, tenant)
    url = f"{API}/{created['id']}"
    for body in ({"name": None}, {"llm": {"max_tokens": 0}}, {"llm": None}, {"colour": 1}):
        assert (await client.patch(url, json=body, headers=tenant.headers)).status == 422, body
    assert await (await client.get(url, headers=tenant.headers)).json() == created


async def test_an_agent_reads_but_cannot_change_chatbots_or_tools(
    client: Client, settings: Settings
) -> None:
    tenant = new_tenant(settings)
    bot = await _chatbot(client, tenant)
    tool = await _tool(client, tenant)
    agent = tenant.as_role(settings, "agent")
    refused = [
        await client.post(API, json={"name": "x"}, headers=agent),
        await client.patch(f"{API}/{bot['id']}", json={"name": "x"}, headers=agent),
        await client.delete(f"{API}/{bot['id']}", headers=agent),
        await client.post(TOOLS, json={"name": "t", "url": PUBLIC_URL}, headers=agent),
        await client.patch(f"{TOOLS}/{tool['id']}", json={"enabled": False}, headers=agent),
        await client.delete(f"{TOOLS}/{tool['id']}", headers=agent),
    ]
    for response in refused:
        assert response.status == 403
    for url in (API, f"{API}/{bot['id']}", TOOLS, f"{TOOLS}/{tool['id']}"):
        assert (await client.get(url, headers=agent)).status == 200, url
    assert await (await client.get(f"{API}/{bot['id']}", headers=agent)).json() == bot
    assert await (await client.get(f"{TOOLS}/{tool['id']}", headers=agent)).json() == tool
    assert (await client.get(API)).status == 401


async def test_another_workspaces_chatbots_and_tools_are_as_unknown_as_missing_ones(
    client: Client, settings: Settings
) -> None:
    a, b = new_tenant(settings), new_tenant(settings)
    bot = await _chatbot(client, b)
    tool = await _tool(client, b)
    for url, patch in ((f"{API}/{bot['id']}", {"name": "x"}), (f"{TOOLS}/{tool['id']}", {})):
        for response in (
            await client.get(url, headers=a.headers),
            await client.patch(url, json=patch, headers=a.headers),
            await client.delete(url, headers=a.headers),
        ):
            assert response.status == 404
            assert (await response.json())["error"]["code"] == "not_found"
    assert (await (await client.get(API, headers=a.headers)).json())["chatbots"] == []
    assert (await (await client.get(TOOLS, headers=a.headers)).json())["tools"] == []
    # B's tool's name is not A's to enable.
    enabled = await client.post(
        API, json={"name": "x", "tools": ["order_status"]}, headers=a.headers
    )
    assert enabled.status == 422
    assert await (await client.get(f"{API}/{bot['id']}", headers=b.headers)).json() == bot
    assert await (await client.get(f"{TOOLS}/{tool['id']}", headers=b.headers)).json() == tool


async def test_a_chatbot_change_reaches_the_applications_using_it(
    client: Client, settings: Settings, db: Db, redis: Redis
) -> None:
    tenant = new_tenant(settings)
    bot = await _chatbot(client, tenant)
    app_id = f"app_{uuid.uuid4().hex}"
    await db["applications"].insert_one(
        {"_id": app_id, "workspace_id": tenant.workspace_id, "chatbot_id": bot["id"]}
    )
    directory = ApplicationDirectory(db, redis, local_ttl_s=0)
    config = await directory.get(app_id, tenant.workspace_id)  # now cached
    assert config["chatbot"]["instructions"] == "Be brief."
    assert config["chatbot"]["llm"]["api_key"].startswith(PREFIX)

    url = f"{API}/{bot['id']}"
    patch = {"instructions": "Answer in French.", "llm": {"model": "large-2"}}
    assert (await client.patch(url, json=patch, headers=tenant.headers)).status == 200
    config = await directory.get(app_id, tenant.workspace_id)
    assert config["chatbot"]["instructions"] == "Answer in French."
    assert config["chatbot"]["llm"]["model"] == "large-2"

    assert (await client.delete(url, headers=tenant.headers)).status == 204
    config = await directory.get(app_id, tenant.workspace_id)
    assert "chatbot" not in config
    assert config["chatbot_id"] is None


async def test_a_tool_is_stored_with_sealed_secrets_and_reaches_the_pipeline(
    client: Client, settings: Settings, db: Db, redis: Redis
) -> None:
    tenant = new_tenant(settings)
    tools = ToolDirectory(db, redis)
    assert await tools.tenant_tools(tenant.workspace_id) == {}  # now cached, empty
    tool = await _tool(client, tenant)
    assert tool["id"].startswith("tool_")
    assert tool["secret_headers"] == ["Authorization"]
    assert tool["headers"] == {"Accept": "application/json"}
    assert tool["enabled"] is True
    stored = await db["tools"].find_one({"_id": tool["id"]})
    assert stored is not None
    assert "tool-secret" not in json.dumps(stored, default=str)
    box = SecretBox(settings.encryption_key.get_secret_value())
    assert box.open(stored["secret_headers"]["Authorization"]) == "Bearer tool-secret"
    offered = await tools.tenant_tools(tenant.workspace_id)
    assert offered["order_status"].url == PUBLIC_URL
    assert offered["order_status"].secret_headers["Authorization"].startswith(PREFIX)

    url = f"{TOOLS}/{tool['id']}"
    patch = {"description": "Where an order is", "secret_headers": {"X-Extra": "two"}}
    updated = await (await client.patch(url, json=patch, headers=tenant.headers)).json()
    assert updated["secret_headers"] == ["Authorization", "X-Extra"]
    assert (await tools.tenant_tools(tenant.workspace_id))["order_status"].description == (
        "Where an order is"
    )
    removed = await client.patch(
        url, json={"secret_headers": {"Authorization": None}}, headers=tenant.headers
    )
    assert (await removed.json())["secret_headers"] == ["X-Extra"]
    # A chatbot may enable the workspace's tool by name.
    await _chatbot(client, tenant, tools=["order_status", "handoff_to_human"])

    assert (await client.delete(url, headers=tenant.headers)).status == 204
    assert await tools.tenant_tools(tenant.workspace_id) == {}
    assert (await client.get(url, headers=tenant.headers)).status == 404


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:8080/x",
        "https://10.0.0.1/x",
        "http://0x7f000001/x",
        "http://localhost:8100/api",
        "file:///etc/passwd",
    ],
)
async def test_a_tool_that_points_inward_is_refused_on_save(
    client: Client, settings: Settings, db: Db, url: str
) -> None:
    tenant = new_tenant(settings)
    response = await client.post(TOOLS, json={"name": "probe", "url": url}, headers=tenant.headers)
    assert response.status == 422, await response.text()
    error = (await response.json())["error"]
    assert error["code"] == "tool_refused"
    assert error["details"][0]["field"] == "url"
    assert await db["tools"].count_documents({"workspace_id": tenant.workspace_id}) == 0


async def test_bad_tools_are_refused_on_create_and_update(
    client: Client, settings: Settings, db: Db
) -> None:
    tenant = new_tenant(settings)
    malformed = await client.post(
        TOOLS, data=b"[", headers={**tenant.headers, "Content-Type": "application/json"}
    )
    assert malformed.status == 400
    bad_bodies: list[dict[str, Any]] = [
        {"name": "s", "url": PUBLIC_URL, "parameters": {"type": "object", "properties": 3}},
        {"name": "s", "url": PUBLIC_URL, "parameters": {"type": "string"}},
        {"name": "handoff_to_human", "url": PUBLIC_URL},
        {"name": "has space", "url": PUBLIC_URL},
        {"name": "s", "url": PUBLIC_URL, "method": "TRACE"},
        {"name": "s", "url": PUBLIC_URL, "headers": {"X-A": 1}},
        {"name": "s", "url": PUBLIC_URL, "secret_headers": {"Bad\nName": "v"}},
        {"name": "s"},
    ]
    for body in bad_bodies:
        response = await client.post(TOOLS, json=body, headers=tenant.headers)
        assert response.status == 422, body
        assert (await response.json())["error"]["code"] == "validation_failed", body
    assert await db["tools"].count_documents({"workspace_id": tenant.workspace_id}) == 0

    tool = await _tool(client, tenant)
    duplicate = await client.post(
        TOOLS, json={"name": "order_status", "url": PUBLIC_URL}, headers=tenant.headers
    )
    assert duplicate.status == 409
    url = f"{TOOLS}/{tool['id']}"
    inward = await client.patch(
        url, json={"url": "http://169.254.169.254/x"}, headers=tenant.headers
    )
    assert inward.status == 422
    assert (await inward.json())["error"]["code"] == "tool_refused"
    bad_schema = await client.patch(
        url, json={"parameters": {"type": "object", "required": "x"}}, headers=tenant.headers
    )
    assert bad_schema.status == 422
    assert (await client.patch(url, json={"enabled": None}, headers=tenant.headers)).status == 422
    assert await (await client.get(url, headers=tenant.headers)).json() == tool
