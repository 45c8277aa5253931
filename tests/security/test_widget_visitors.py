"""Visitor tokens are revocable: an operator blocks a visitor of their application, whose token
is refused from then on, open chats included; another workspace cannot block (or list, or
unblock) a visitor of an application it does not own."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from core.settings import Settings
from tests.integration.api_harness import Tenant, new_tenant
from tests.integration.socket_harness import SocketService
from tests.security.widget_harness import widget
from web import applications

pytestmark = pytest.mark.integration

Api = TestClient[web.Request, web.Application]


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    async with TestClient(TestServer(applications.create_app(settings))) as client:
        yield client


async def _application(api: Api, tenant: Tenant) -> dict[str, Any]:
    response = await api.post("/api/apps", json={"name": "site"}, headers=tenant.headers)
    assert response.status == 201, await response.text()
    created: dict[str, Any] = await response.json()
    return created


async def _until(condition: Any, within_s: float = 10) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, "not within the time"
        await asyncio.sleep(0.05)


async def test_a_blocked_visitors_token_is_refused(
    service: SocketService, api: Api, settings: Settings
) -> None:
    tenant = new_tenant(settings)
    application = await _application(api, tenant)
    key, blocked_path = application["widget_key"], f"/api/apps/{application['id']}/blocked-visitors"
    chat = widget()
    await chat.connect(service.url, {"key": key})
    [session] = await chat.wait_for("session")
    visitor_id = session["visitor_id"]
    assert (await chat.call("message", {"id": "m1", "text": "hi"}))["ok"]

    agent = tenant.as_role(settings, "agent")  # any operator of the workspace may block
    response = await api.post(blocked_path, json={"visitor_id": visitor_id}, headers=agent)
    assert response.status == 201, await response.text()
    blocked = await response.json()
    assert (blocked["visitor_id"], blocked["application_id"]) == (visitor_id, application["id"])

    ack = await chat.call("message", {"id": "m2", "text": "still here?"})
    assert (ack["ok"], ack["error"]["code"]) == (False, "blocked"), ack
    await _until(lambda: not chat.sio.connected)
    auth = {"key": key, "token": session["token"]}
    assert await widget().refused_code(service.url, auth) == "blocked"
    response = await api.get(blocked_path, headers=agent)
    assert [b["visitor_id"] for b in (await response.json())["blocked_visitors"]] == [visitor_id]

    response = await api.delete(f"{blocked_path}/{visitor_id}", headers=agent)
    assert response.status == 204
    back = widget()
    await back.connect(service.url, auth)
    [resumed] = await back.wait_for("session")
    assert resumed["visitor_id"] == visitor_id
    await back.close()
    response = await api.delete(f"{blocked_path}/{visitor_id}", headers=agent)
    assert response.status == 404


async def test_another_workspace_cannot_block_a_visitor_of_an_application_it_does_not_own(
    service: SocketService, api: Api, settings: Settings
) -> None:
    owner, other = new_tenant(settings), new_tenant(settings)
    application = await _application(api, owner)
    blocked_path = f"/api/apps/{application['id']}/blocked-visitors"
    chat = widget()
    await chat.connect(service.url, {"key": application["widget_key"]})
    [session] = await chat.wait_for("session")
    await chat.close()
    visitor = {"visitor_id": session["visitor_id"]}

    for headers in (other.headers, other.as_role(settings, "agent")):
        response = await api.post(blocked_path, json=visitor, headers=headers)
        assert response.status == 404, await response.text()
        assert (await api.get(blocked_path, headers=headers)).status == 404
    response = await api.post(blocked_path, json=visitor, headers=owner.headers)
    assert response.status == 201
    response = await api.delete(f"{blocked_path}/{visitor['visitor_id']}", headers=other.headers)
    assert response.status == 404
    response = await api.get(blocked_path, headers=owner.headers)
    assert len((await response.json())["blocked_visitors"]) == 1  # still blocked


async def test_a_block_names_a_visitor_id_and_nothing_else(api: Api, settings: Settings) -> None:
    tenant = new_tenant(settings)
    application = await _application(api, tenant)
    blocked_path = f"/api/apps/{application['id']}/blocked-visitors"
    for body in ({}, {"visitor_id": ""}, {"visitor_id": "v_1"}, {"visitor_id": {"$ne": None}},
                 {"visitor_id": "v_" + "0" * 32, "extra": 1}):  # fmt: skip
        response = await api.post(blocked_path, json=body, headers=tenant.headers)
        assert response.status == 422, (body, await response.text())
    assert (await api.post(blocked_path, headers=tenant.headers)).status in (400, 422)
