"""A public widget key is no open tap on the model: a client that connects again and again
without a token (a new visitor each time) is refused by its address, and fresh visitors from
many addresses still share their application's and workspace's budgets; operators see the hit
once, as a ``budget.exceeded`` event."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from core.settings import Settings
from tests.integration.api_harness import new_tenant
from tests.integration.socket_harness import SocketService, socket_service, widget_application
from tests.security.widget_harness import (
    an_address,
    connect_from,
    event_offsets,
    events_since,
    refusal_from,
    widget,
)
from web import applications

pytestmark = pytest.mark.integration

Api = TestClient[web.Request, web.Application]


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    async with TestClient(TestServer(applications.create_app(settings))) as client:
        yield client


async def test_tokenless_connects_from_one_address_are_refused_after_the_limit(
    settings: Settings,
) -> None:
    _, key = await widget_application(settings, f"ws_{uuid.uuid4().hex}")
    limited = settings.model_copy(update={"widget_connects_per_minute": 20})
    attacker = an_address()
    async with socket_service(limited) as service:
        refusals = [await refusal_from(service.url, {"key": key}, attacker) for _ in range(40)]
        # Someone else, from another address, is not locked out by the flood.
        bystander = await refusal_from(service.url, {"key": key}, an_address())
    assert refusals[:20] == [None] * 20
    for refusal in refusals[20:]:
        assert refusal is not None
        assert refusal["code"] == "rate_limited", refusal
        assert 1 <= refusal["retry_after_s"] <= 60
    assert bystander is None


async def _send_as_new_visitors(
    service: SocketService, key: str, count: int
) -> list[dict[str, Any]]:
    """One message from each of ``count`` fresh visitors, each from an address of its own."""
    acks = []
    for n in range(count):
        client = widget()
        await connect_from(client, service.url, {"key": key}, an_address())
        await client.wait_for("session")
        acks.append(await client.call("message", {"id": f"m{n}", "text": "spend"}))
        await client.close()
    return acks


async def test_fresh_visitors_exceed_the_application_budget_and_operators_hear_once(
    service: SocketService, settings: Settings
) -> None:
    application_id, key = await widget_application(settings, f"ws_{uuid.uuid4().hex}")
    offsets = await event_offsets(settings)
    acks = await _send_as_new_visitors(service, key, 100)
    limit = settings.application_messages_per_minute
    assert limit < 100
    refused = [a for a in acks if not a["ok"]]
    assert len([a for a in acks if a["ok"]]) == limit
    assert len(refused) == 100 - limit
    for ack in refused:
        assert ack["error"]["code"] == "rate_limited", ack
        assert 1 <= ack["retry_after_s"] <= 60
    events = await events_since(settings, offsets, application_id)
    exceeded = [e for e in events if e.type == "budget.exceeded"]
    assert len(exceeded) == 1, exceeded
    data = dict(exceeded[0].data or {})
    assert 1 <= data.pop("retry_after_s") <= 60
    assert data == {"budget": "messages_per_minute", "scope": "application", "limit": limit}


async def test_an_applications_own_budget_applies_and_is_validated(
    service: SocketService, api: Api, settings: Settings
) -> None:
    tenant = new_tenant(settings)
    bad_budgets: list[Any] = [
        {"messages_per_minute": 0}, {"messages_per_minute": "5"}, {"tokens_per_day": -1},
        {"messages_per_minute": 10**9}, {"per_hour": 5}, 5,
    ]  # fmt: skip
    for bad in bad_budgets:
        response = await api.post(
            "/api/apps", json={"name": "x", "budget": bad}, headers=tenant.headers
        )
        assert response.status == 422, (bad, await response.text())
    response = await api.post(
        "/api/apps",
        json={"name": "tight", "budget": {"messages_per_minute": 5, "tokens_per_day": 1000}},
        headers=tenant.headers,
    )
    assert response.status == 201, await response.text()
    created = await response.json()
    assert created["budget"] == {"messages_per_minute": 5, "tokens_per_day": 1000}
    acks = await _send_as_new_visitors(service, created["widget_key"], 8)
    assert [a["ok"] for a in acks] == [True] * 5 + [False] * 3


async def test_fresh_visitors_of_several_applications_share_the_workspace_budget(
    settings: Settings,
) -> None:
    workspace_id = f"ws_{uuid.uuid4().hex}"
    first_id, first = await widget_application(settings, workspace_id)
    second_id, second = await widget_application(settings, workspace_id)
    limited = settings.model_copy(update={"workspace_messages_per_minute": 10})
    offsets = await event_offsets(settings)
    async with socket_service(limited) as service:
        acks = await _send_as_new_visitors(service, first, 6)
        acks += await _send_as_new_visitors(service, second, 6)
    assert [a["ok"] for a in acks] == [True] * 10 + [False] * 2
    assert {a["error"]["code"] for a in acks[10:]} == {"rate_limited"}
    # The event goes with the conversation that hit the limit: the second application's.
    assert not await events_since(settings, offsets, first_id)
    [event] = await events_since(settings, offsets, second_id)
    assert (event.type, (event.data or {})["scope"]) == ("budget.exceeded", "workspace")
    assert (event.data or {})["limit"] == 10
