"""Widget keys: made-up keys cost no database lookup and cannot flush the known keys, a
replaced key is refused at once (open chats too), and typing floods are not relayed."""

from __future__ import annotations

import asyncio
import math
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from core.cached.applications import ApplicationDirectory
from core.clients.database import Document, database
from core.clients.realtime import INBOX_NAMESPACE
from core.settings import Settings
from tests.integration.api_harness import Db, new_tenant
from tests.integration.socket_harness import (
    Client,
    SocketService,
    operator_token,
    widget_application,
)
from tests.security.widget_harness import widget
from web import applications
from web.socket.typing_relay import TYPING_EVERY_S
from web.socket.widget_keys import WidgetKeys

pytestmark = pytest.mark.integration

Api = TestClient[web.Request, web.Application]


class Lookups(monitoring.CommandListener):
    """Counts the lookups of an application by its widget key that reach MongoDB."""

    def __init__(self) -> None:
        self.count = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        command = event.command
        if command.get("find") == "applications" and "widget_key" in command.get("filter", {}):
            self.count += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.fixture
async def counted(settings: Settings) -> AsyncIterator[tuple[AsyncDatabase[Document], Lookups]]:
    lookups = Lookups()
    client: AsyncMongoClient[Document] = AsyncMongoClient(
        settings.mongo_url, event_listeners=[lookups]
    )
    yield database(client, settings), lookups
    await client.close()


def random_key() -> str:
    return "pk_" + secrets.token_urlsafe(24)


MALFORMED = [
    "", "pk_", "pk_short", "sbk_" + "a" * 32, "PK_" + "a" * 32, "pk_" + "a" * 31,
    "pk_" + "a" * 33, "pk_" + "a" * 31 + "!", "pk_" + "a" * 31 + "\n", "x" * 10_000,
    '{"$ne": null}', "pk_" + "é" * 32,
]  # fmt: skip


async def test_made_up_keys_do_not_reach_the_database_nor_evict_a_known_key(
    counted: tuple[AsyncDatabase[Document], Lookups], redis: Redis, settings: Settings
) -> None:
    db, lookups = counted
    _, good = await widget_application(settings, f"ws_{uuid.uuid4().hex}")
    directory = ApplicationDirectory(db, redis, local_ttl_s=0)
    keys = WidgetKeys(db, redis, directory, max_known=4, max_unknown=16)
    assert await keys.application(good) is not None
    assert lookups.count == 1

    for key in MALFORMED:
        assert await keys.application(key) is None
    assert lookups.count == 1  # refused on their form alone

    made_up = [random_key() for _ in range(200)]
    for key in made_up:
        assert await keys.application(key) is None
    assert lookups.count == 201  # each new one is looked up once...
    for key in made_up[-16:]:
        assert await keys.application(key) is None
    assert lookups.count == 201  # ...and then remembered here,
    elsewhere = WidgetKeys(db, redis, directory)  # and on every other instance, through Redis
    for key in made_up:
        assert await elsewhere.application(key) is None
    assert lookups.count == 201

    # The flood did not push the known key out: it is still answered without any lookup.
    assert good in keys.known
    assert len(keys.unknown) == 16
    assert await keys.application(good) is not None
    assert lookups.count == 201


async def test_a_malformed_key_is_refused_even_if_stored(
    service: SocketService, db: Db, settings: Settings
) -> None:
    application_id, _ = await widget_application(settings, f"ws_{uuid.uuid4().hex}")
    await db["applications"].update_one({"_id": application_id}, {"$set": {"widget_key": "pk_x"}})
    assert await widget().refused_code(service.url, {"key": "pk_x"}) == "bad_key"


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    async with TestClient(TestServer(applications.create_app(settings))) as client:
        yield client


async def test_a_replaced_key_is_refused_at_once_open_chats_included(
    service: SocketService, api: Api, settings: Settings
) -> None:
    tenant = new_tenant(settings)
    response = await api.post("/api/apps", json={"name": "site"}, headers=tenant.headers)
    created = await response.json()
    application_id, old = created["id"], created["widget_key"]
    chat = widget()
    await chat.connect(service.url, {"key": old})
    [session] = await chat.wait_for("session")
    assert (await chat.call("message", {"id": "before", "text": "hi"}))["ok"]

    agent = tenant.as_role(settings, "agent")
    response = await api.post(f"/api/apps/{application_id}/widget-key", headers=agent)
    assert response.status == 403
    response = await api.post(f"/api/apps/{application_id}/widget-key", headers=tenant.headers)
    assert response.status == 200, await response.text()
    rotated = await response.json()
    new = rotated["widget_key"]
    assert new != old
    assert (new[:3], len(new)) == ("pk_", len(old))
    other = new_tenant(settings)
    response = await api.post(f"/api/apps/{application_id}/widget-key", headers=other.headers)
    assert response.status == 404

    ack = await chat.call("message", {"id": "after", "text": "hi"})
    assert (ack["ok"], ack["error"]["code"]) == (False, "bad_key"), ack
    await _until(lambda: not chat.sio.connected)  # and the server ends the chat
    assert await widget().refused_code(service.url, {"key": old}) == "bad_key"
    auth = {"key": old, "token": session["token"]}
    assert await widget().refused_code(service.url, auth) == "bad_key"
    fresh = widget()
    await fresh.connect(service.url, {"key": new, "token": session["token"]})
    [resumed] = await fresh.wait_for("session")
    assert resumed["conversation_id"] == session["conversation_id"]
    await fresh.close()


async def _until(condition: Any, within_s: float = 10) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, "not within the time"
        await asyncio.sleep(0.05)


def _bound(elapsed_s: float) -> int:
    """Relays a flood may make: a start and an end per interval it lasted, and one more pair."""
    return 2 * (math.ceil(elapsed_s / TYPING_EVERY_S) + 1)


async def test_typing_floods_are_not_relayed_either_way(
    service: SocketService, settings: Settings, db: Db
) -> None:
    workspace_id = f"ws_{uuid.uuid4().hex}"
    application_id, key = await widget_application(settings, workspace_id)
    visitor = widget()
    await visitor.connect(service.url, {"key": key})
    [session] = await visitor.wait_for("session")
    conversation_id = session["conversation_id"]
    await db["conversations"].insert_one(
        {"_id": conversation_id, "workspace_id": workspace_id, "application_id": application_id}
    )
    operator = Client(INBOX_NAMESPACE)
    await operator.connect(service.url, {"token": operator_token(settings, workspace_id)})
    assert await operator.call("join", {"conversation_id": conversation_id}) == {"ok": True}

    started = time.monotonic()
    for _ in range(200):
        await visitor.emit("typing", {"typing": False})
    for n in range(200):
        await visitor.emit("typing", {"typing": n % 2 == 0})
    await visitor.emit("typing", {"typing": False})
    for _ in range(200):
        call = {"conversation_id": conversation_id, "typing": False}
        assert await operator.call("typing", call) == {"ok": True}
    for n in range(200):
        call = {"conversation_id": conversation_id, "typing": n % 2 == 0}
        assert await operator.call("typing", call) == {"ok": True}
    await operator.call("typing", {"conversation_id": conversation_id, "typing": False})
    elapsed = time.monotonic() - started
    # The last word of each side is "not typing", and it arrives.
    await _until(lambda: operator.received["typing"][-1:] == [_typing(conversation_id, "visitor")])
    await _until(lambda: visitor.received["typing"][-1:] == [_typing(conversation_id, "operator")])
    assert len(operator.received["typing"]) <= _bound(elapsed)
    assert len(visitor.received["typing"]) <= _bound(elapsed)
    await visitor.close()
    await operator.close()


def _typing(conversation_id: str, role: str) -> dict[str, Any]:
    return {"conversation_id": conversation_id, "role": role, "typing": False}
