"""The channels API (the bots service) against the real FerretDB and Redis and a fake Telegram.

The service runs in this process with aiohttp's test client; Telegram is ``FakeTelegram`` on
loopback, which checks every call as the Bot API does. An API channel's URL is on loopback too,
so its tests allow that network (``channel_allow_networks``) unless they check the refusal.
"""

from __future__ import annotations

import json
import logging
import random
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from core.cached.channel_directory import cache_key
from core.channels.standard_webhooks import PREFIX as SIGNING_PREFIX
from core.clients.database import Document
from core.security.secrets import PREFIX as SEALED_PREFIX
from core.security.secrets import SecretBox
from core.settings import Settings
from core.stores.application_store import ApplicationStore
from core.stores.channel_status import ChannelStatus
from tests.fakes.telegram import FakeTelegram
from tests.integration.api_harness import Db, Tenant, new_tenant
from web import bots
from web.openapi import document

Client = TestClient[web.Request, web.Application]
API = "/api/channels"
RECEIVER = "http://127.0.0.1:9/hooks/switchboard"  # checked when saved, never called here
VIEW_FIELDS = {
    "id", "type", "application_id", "name", "status", "platform_id", "config", "webhook_url",
    "created_at", "updated_at", "disconnected_at",
}  # fmt: skip
HEALTH_FIELDS = {
    "last_webhook_at", "last_send_at", "last_error_at", "last_error", "last_dropped_at",
    "last_dropped_reason", "last_refused_at", "last_refused_reason", "messages_in_today",
    "messages_out_today",
}  # fmt: skip


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        yield fake


def _settings(settings: Settings, telegram_api: str, **update: Any) -> Settings:
    return settings.model_copy(
        update={"telegram_api_base": telegram_api, "channel_allow_networks": "127.0.0.0/8"} | update
    )


async def _client(settings: Settings) -> Client:
    client: Client = TestClient(TestServer(bots.create_app(settings)))
    await client.start_server()
    return client


@pytest.fixture
async def client(settings: Settings, telegram: FakeTelegram) -> AsyncIterator[Client]:
    running = await _client(_settings(settings, telegram.url))
    yield running
    await running.close()


def _box(settings: Settings) -> SecretBox:
    return SecretBox(settings.encryption_key.get_secret_value())


def _new_bot(telegram: FakeTelegram, bot_id: int | None = None) -> tuple[str, int]:
    bot_id = bot_id if bot_id is not None else random.randint(10**9, 10**10)
    token = f"{bot_id}:{secrets.token_urlsafe(30)}"
    telegram.add_bot(token, bot_id, f"support_{bot_id}_bot")
    return token, bot_id


async def _application(db: Db, tenant: Tenant) -> str:
    created = await ApplicationStore(db).create(tenant.workspace_id, {"name": "Support"})
    return str(created["_id"])


async def _connect_telegram(
    client: Client, tenant: Tenant, application_id: str, token: str, **fields: Any
) -> Document:
    body = {
        "type": "telegram",
        "application_id": application_id,
        "credentials": {"bot_token": token},
    }
    response = await client.post(API, json=body | fields, headers=tenant.headers)
    assert response.status == 201, await response.text()
    created: Document = await response.json()
    return created


async def _connect_api(client: Client, tenant: Tenant, application_id: str) -> Document:
    body = {"type": "api", "application_id": application_id, "credentials": {"url": RECEIVER}}
    response = await client.post(API, json=body, headers=tenant.headers)
    assert response.status == 201, await response.text()
    created: Document = await response.json()
    return created


async def _stored(db: Db, channel_id: str) -> Document:
    found = await db["channels"].find_one({"_id": channel_id})
    assert found is not None
    return found


async def _count(db: Db, tenant: Tenant) -> int:
    return await db["channels"].count_documents({"workspace_id": tenant.workspace_id})


async def test_a_telegram_bot_is_checked_connected_and_stored_sealed(
    client: Client,
    settings: Settings,
    db: Db,
    telegram: FakeTelegram,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    tenant = new_tenant(settings)
    application_id = await _application(db, tenant)
    token, bot_id = _new_bot(telegram)

    created = await _connect_telegram(client, tenant, application_id, token)

    assert set(created) == VIEW_FIELDS
    assert created["id"].startswith("ch_")
    assert (created["type"], created["application_id"]) == ("telegram", application_id)
    assert (created["status"], created["platform_id"]) == ("active", str(bot_id))
    assert created["name"] == f"support_{bot_id}_bot"
    assert created["config"]["bot_username"] == f"support_{bot_id}_bot"
    public = f"{settings.public_base_url}/webhooks/telegram/{created['id']}"
    assert created["webhook_url"] == public
    assert created["disconnected_at"] is None
    # getMe first, then setWebhook with the public URL and a fresh secret.
    assert [call.method for call in telegram.calls] == ["getMe", "setWebhook"]
    webhook = telegram.webhook(token)
    assert webhook is not None
    assert webhook.url == public
    assert webhook.secret_token is not None
    assert len(webhook.secret_token) >= 32
    assert webhook.allowed_updates is not None
    assert "message" in webhook.allowed_updates

    stored = await _stored(db, created["id"])
    raw = json.dumps(stored, default=str)
    assert token not in raw
    assert webhook.secret_token not in raw
    assert stored["credentials"].startswith(SEALED_PREFIX)
    assert stored["webhook_secret"].startswith(SEALED_PREFIX)
    box = _box(settings)
    assert json.loads(box.open(stored["credentials"])) == {"bot_token": token}
    assert box.open(stored["webhook_secret"]) == webhook.secret_token
    assert stored["workspace_id"] == tenant.workspace_id

    for url in (API, f"{API}?application_id={application_id}", f"{API}/{created['id']}"):
        text = await (await client.get(url, headers=tenant.headers)).text()
        assert token not in text, url
        assert webhook.secret_token not in text, url
        assert "credentials" not in text, url
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert token not in logged
    assert webhook.secret_token not in logged


async def test_channels_are_listed_shown_and_report_their_health(
    client: Client, settings: Settings, db: Db, redis: Redis, telegram: FakeTelegram
) -> None:
    tenant = new_tenant(settings)
    first, second = await _application(db, tenant), await _application(db, tenant)
    named = await _connect_telegram(client, tenant, first, _new_bot(telegram)[0], name="Sales")
    other = await _connect_telegram(client, tenant, second, _new_bot(telegram)[0])
    assert named["name"] == "Sales"

    agent = tenant.as_role(settings, "agent")
    listed = await (await client.get(API, headers=agent)).json()
    assert [c["id"] for c in listed["channels"]] == [named["id"], other["id"]]
    filtered = await (await client.get(f"{API}?application_id={second}", headers=agent)).json()
    assert [c["id"] for c in filtered["channels"]] == [other["id"]]
    assert (await client.get(f"{API}?colour=red", headers=agent)).status == 422

    status = ChannelStatus(redis)
    await status.webhook_received(named["id"], 3)
    await status.sent(named["id"], 2)
    await status.failed(named["id"], "Telegram sendMessage: 403 Forbidden: bot was blocked")
    shown = await (await client.get(f"{API}/{named['id']}", headers=agent)).json()
    assert set(shown) == VIEW_FIELDS | {"health"}
    health = shown["health"]
    assert set(health) == HEALTH_FIELDS
    assert (health["messages_in_today"], health["messages_out_today"]) == (3, 2)
    assert health["last_webhook_at"] is not None
    assert health["last_send_at"] is not None
    assert "blocked" in health["last_error"]
    alone = await (await client.get(f"{API}/{named['id']}/status", headers=agent)).json()
    assert alone == health
    quiet = await (await client.get(f"{API}/{other['id']}/status", headers=agent)).json()
    assert (quiet["messages_in_today"], quiet["last_webhook_at"]) == (0, None)


async def test_refused_credentials_and_an_unreachable_platform_store_nothing(
    client: Client, settings: Settings, db: Db, telegram: FakeTelegram
) -> None:
    tenant = new_tenant(settings)
    application_id = await _application(db, tenant)
    body: dict[str, Any] = {"type": "telegram", "application_id": application_id}

    unknown = f"{random.randint(10**9, 10**10)}:{secrets.token_urlsafe(30)}"  # no such bot
    refused = await client.post(
        API, json=body | {"credentials": {"bot_token": unknown}}, headers=tenant.headers
    )
    assert refused.status == 422
    text = await refused.text()
    assert json.loads(text)["error"]["code"] == "credentials_refused"
    assert unknown not in text
    misshapen = await client.post(
        API, json=body | {"credentials": {"bot_token": "not a token"}}, headers=tenant.headers
    )
    assert misshapen.status == 422
    assert (await misshapen.json())["error"]["code"] == "credentials_refused"
    for wrong in (
        body | {"credentials": {"url": RECEIVER}},
        body | {"type": "fax", "credentials": {}},
        body | {"credentials": {"bot_token": "1:x"}, "colour": "red"},
        {"type": "telegram", "credentials": {"bot_token": "1:x"}},
    ):
        response = await client.post(API, json=wrong, headers=tenant.headers)
        assert response.status == 422, wrong
        assert (await response.json())["error"]["code"] == "validation_failed"

    token, _ = _new_bot(telegram)
    telegram.fail_next("getMe", status=502)
    down = await client.post(
        API, json=body | {"credentials": {"bot_token": token}}, headers=tenant.headers
    )
    assert down.status == 503
    text = await down.text()
    assert json.loads(text)["error"]["code"] == "dependency_unavailable"
    assert token not in text
    telegram.fail_next("setWebhook", status=500)
    half = await client.post(
        API, json=body | {"credentials": {"bot_token": token}}, headers=tenant.headers
    )
    assert half.status == 503
    assert telegram.webhook(token) is None
    assert await _count(db, tenant) == 0


async def test_a_telegram_api_that_does_not_answer_is_a_503(
    settings: Settings, db: Db, telegram: FakeTelegram
) -> None:
    tenant = new_tenant(settings)
    application_id = await _application(db, tenant)
    token, _ = _new_bot(telegram)
    client = await _client(_settings(settings, "http://127.0.0.1:9"))  # nothing listens
    try:
        body = {
            "type": "telegram",
            "application_id": application_id,
            "credentials": {"bot_token": token},
        }
        response = await client.post(API, json=body, headers=tenant.headers)
        text = await response.text()
    finally:
        await client.close()
    assert response.status == 503
    assert json.loads(text)["error"]["code"] == "dependency_unavailable"
    assert token not in text
    assert await _count(db, tenant) == 0


async def test_agents_and_other_workspaces_cannot_connect(
    client: Client, settings: Settings, db: Db, telegram: FakeTelegram
) -> None:
    tenant, other = new_tenant(settings), new_tenant(settings)
    application_id = await _application(db, tenant)
    token, _ = _new_bot(telegram)
    body = {
        "type": "telegram",
        "application_id": application_id,
        "credentials": {"bot_token": token},
    }

    agent = await client.post(API, json=body, headers=tenant.as_role(settings, "agent"))
    assert agent.status == 403
    foreign = await client.post(API, json=body, headers=other.headers)
    assert foreign.status == 404
    assert (await foreign.json())["error"]["code"] == "not_found"
    missing = await client.post(
        API, json=body | {"application_id": "app_missing"}, headers=tenant.headers
    )
    assert missing.status == 404
    assert (await client.post(API, json=body)).status == 401
    assert telegram.calls == []
    assert await _count(db, tenant) + await _count(db, other) == 0
    owner = await client.post(API, json=body, headers=tenant.as_role(settings, "owner"))
    assert owner.status == 201


async def test_another_workspaces_channel_is_as_unknown_as_a_missing_one(
    client: Client, settings: Settings, db: Db, telegram: FakeTelegram
) -> None:
    owner, stranger = new_tenant(settings), new_tenant(settings)
    token, _ = _new_bot(telegram)
    channel = await _connect_telegram(client, owner, await _application(db, owner), token)
    url = f"{API}/{channel['id']}"
    calls = len(telegram.calls)
    for response in (
        await client.get(url, headers=stranger.headers),
        await client.get(f"{url}/status", headers=stranger.headers),
        await client.delete(url, headers=stranger.headers),
        await client.post(
            f"{url}/credentials", json={"bot_token": token}, headers=stranger.headers
        ),
        await client.get(f"{API}/ch_missing", headers=owner.headers),
    ):
        assert response.status == 404
        assert (await response.json())["error"]["code"] == "not_found"
    assert (await (await client.get(API, headers=stranger.headers)).json())["channels"] == []
    assert len(telegram.calls) == calls
    assert await (await client.get(url, headers=owner.headers)).json() == channel | {
        "health": (await (await client.get(f"{url}/status", headers=owner.headers)).json())
    }


async def test_a_bot_connected_in_the_workspace_is_a_conflict(
    client: Client, settings: Settings, db: Db, telegram: FakeTelegram
) -> None:
    tenant = new_tenant(settings)
    first, second = await _application(db, tenant), await _application(db, tenant)
    token, _ = _new_bot(telegram)
    channel = await _connect_telegram(client, tenant, first, token)
    webhook = telegram.webhook(token)
    body = {"type": "telegram", "application_id": second, "credentials": {"bot_token": token}}

    again = await client.post(API, json=body, headers=tenant.headers)
    assert again.status == 409
    assert (await again.json())["error"]["code"] == "conflict"
    assert telegram.webhook(token) == webhook, "the connected channel keeps its webhook"
    assert await _count(db, tenant) == 1

    assert (await client.delete(f"{API}/{channel['id']}", headers=tenant.headers)).status == 200
    reconnected = await _connect_telegram(client, tenant, second, token)
    assert reconnected["id"] != channel["id"]
    hooked = telegram.webhook(token)
    assert hooked is not None
    assert hooked.url.endswith(reconnected["id"])


async def test_a_token_of_the_same_bot_replaces_the_old_one_with_a_new_secret(
    client: Client, settings: Settings, db: Db, redis: Redis, telegram: FakeTelegram
) -> None:
    tenant = new_tenant(settings)
    old_token, bot_id = _new_bot(telegram)
    channel = await _connect_telegram(client, tenant, await _application(db, tenant), old_token)
    old_webhook = telegram.webhook(old_token)
    assert old_webhook is not None
    new_token, _ = _new_bot(telegram, bot_id)  # BotFather's /revoke: same bot, new token
    await redis.set(cache_key(channel["id"]), "{}")
    url = f"{API}/{channel['id']}/credentials"

    agent = await client.post(
        url, json={"bot_token": new_token}, headers=tenant.as_role(settings, "agent")
    )
    assert agent.status == 403
    rotated = await client.post(url, json={"bot_token": new_token}, headers=tenant.headers)
    assert rotated.status == 200, await rotated.text()
    text = await rotated.text()
    assert new_token not in text
    view = json.loads(text)
    assert (view["id"], view["status"], view["platform_id"]) == (
        channel["id"], "active", str(bot_id),
    )  # fmt: skip
    new_webhook = telegram.webhook(new_token)
    assert new_webhook is not None
    assert new_webhook.url == channel["webhook_url"]
    assert new_webhook.secret_token not in (None, old_webhook.secret_token)
    stored = await _stored(db, channel["id"])
    box = _box(settings)
    assert json.loads(box.open(stored["credentials"])) == {"bot_token": new_token}
    assert box.open(stored["webhook_secret"]) == new_webhook.secret_token
    assert await redis.get(cache_key(channel["id"])) is None

    other_token, _ = _new_bot(telegram)
    another = await client.post(url, json={"bot_token": other_token}, headers=tenant.headers)
    assert another.status == 422
    assert other_token not in await another.text()
    assert telegram.webhook(other_token) is None, "another bot's webhook is never touched"
    assert await _stored(db, channel["id"]) == stored
    for wrong in ({"url": RECEIVER}, {}, {"bot_token": 5}):
        assert (await client.post(url, json=wrong, headers=tenant.headers)).status == 422, wrong
    assert await _stored(db, channel["id"]) == stored


async def test_disconnecting_removes_the_webhook_once(
    client: Client, settings: Settings, db: Db, redis: Redis, telegram: FakeTelegram
) -> None:
    tenant = new_tenant(settings)
    token, _ = _new_bot(telegram)
    channel = await _connect_telegram(client, tenant, await _application(db, tenant), token)
    url = f"{API}/{channel['id']}"
    assert (await client.delete(url, headers=tenant.as_role(settings, "agent"))).status == 403
    await redis.set(cache_key(channel["id"]), "{}")

    response = await client.delete(url, headers=tenant.headers)
    assert response.status == 200
    gone = await response.json()
    assert (gone["status"], gone["disconnect_warning"]) == ("disconnected", None)
    assert gone["disconnected_at"] is not None
    assert telegram.webhook(token) is None
    assert telegram.requests["deleteWebhook"] == 1
    assert await redis.get(cache_key(channel["id"])) is None
    stored = await _stored(db, channel["id"])
    assert stored["status"] == "disconnected"

    again = await client.delete(url, headers=tenant.headers)
    assert again.status == 200
    assert await again.json() == gone
    assert telegram.requests["deleteWebhook"] == 1
    assert await _stored(db, channel["id"]) == stored
    rotate = await client.post(
        f"{url}/credentials", json={"bot_token": token}, headers=tenant.headers
    )
    assert rotate.status == 409
    shown = await (await client.get(url, headers=tenant.headers)).json()
    assert shown["status"] == "disconnected"


async def test_a_platform_that_refuses_to_disconnect_still_leaves_the_channel_disconnected(
    client: Client, settings: Settings, db: Db, telegram: FakeTelegram
) -> None:
    tenant = new_tenant(settings)
    token, _ = _new_bot(telegram)
    channel = await _connect_telegram(client, tenant, await _application(db, tenant), token)
    telegram.fail_next("deleteWebhook", status=502)

    response = await client.delete(f"{API}/{channel['id']}", headers=tenant.headers)
    assert response.status == 200
    text = await response.text()
    assert token not in text
    gone = json.loads(text)
    assert gone["status"] == "disconnected"
    assert "deleteWebhook" in gone["disconnect_warning"]
    assert (await _stored(db, channel["id"]))["status"] == "disconnected"


async def test_an_api_channel_shows_its_signing_secret_once(
    client: Client, settings: Settings, db: Db
) -> None:
    tenant = new_tenant(settings)
    application_id = await _application(db, tenant)
    created = await _connect_api(client, tenant, application_id)

    secret = created.pop("signing_secret")
    assert secret.startswith(SIGNING_PREFIX)
    assert set(created) == VIEW_FIELDS
    assert (created["id"], created["type"], created["status"]) == (application_id, "api", "active")
    assert created["config"] == {"webhook_url": RECEIVER}
    stored = await _stored(db, application_id)
    assert secret not in json.dumps(stored, default=str)
    assert _box(settings).open(stored["webhook_secret"]) == secret
    for url in (API, f"{API}/{application_id}", f"{API}/{application_id}/status"):
        text = await (await client.get(url, headers=tenant.headers)).text()
        assert secret not in text, url
        assert "signing_secret" not in text, url

    body = {"type": "api", "application_id": application_id, "credentials": {"url": RECEIVER}}
    again = await client.post(API, json=body, headers=tenant.headers)
    assert again.status == 409

    url = f"{API}/{application_id}/credentials"
    rotated = await (await client.post(url, json={"url": RECEIVER}, headers=tenant.headers)).json()
    assert rotated["signing_secret"].startswith(SIGNING_PREFIX)
    assert rotated["signing_secret"] != secret
    moved_to = "http://127.0.0.1:9/other"
    moved = await (await client.post(url, json={"url": moved_to}, headers=tenant.headers)).json()
    assert moved["config"] == {"webhook_url": moved_to}
    assert moved["signing_secret"] not in (secret, rotated["signing_secret"])
    stored = await _stored(db, application_id)
    assert _box(settings).open(stored["webhook_secret"]) == moved["signing_secret"]
    refused = await client.post(url, json={"url": "ftp://127.0.0.1/x"}, headers=tenant.headers)
    assert refused.status == 422
    for misshapen in ({}, {"url": RECEIVER, "colour": "red"}, {"bot_token": "1:x"}):
        response = await client.post(url, json=misshapen, headers=tenant.headers)
        assert response.status == 422, misshapen
        assert (await response.json())["error"]["code"] == "validation_failed"
    assert await _stored(db, application_id) == stored

    assert (await client.delete(f"{API}/{application_id}", headers=tenant.headers)).status == 200
    reconnected = await _connect_api(client, tenant, application_id)
    assert reconnected["status"] == "active"
    assert reconnected["signing_secret"] != moved["signing_secret"]


async def test_an_api_channel_url_must_pass_the_egress_guard(
    settings: Settings, db: Db, telegram: FakeTelegram
) -> None:
    tenant = new_tenant(settings)
    application_id = await _application(db, tenant)
    client = await _client(_settings(settings, telegram.url, channel_allow_networks=""))
    try:
        for url in (RECEIVER, "http://169.254.169.254/latest", "file:///etc/passwd"):
            body = {"type": "api", "application_id": application_id, "credentials": {"url": url}}
            response = await client.post(API, json=body, headers=tenant.headers)
            assert response.status == 422, url
            assert (await response.json())["error"]["code"] == "credentials_refused"
    finally:
        await client.close()
    assert await _count(db, tenant) == 0


def test_every_route_is_in_the_openapi_document(settings: Settings) -> None:
    documented = {
        (method.upper(), path)
        for path, item in document(bots.OPERATIONS)["paths"].items()
        for method in item
    }
    served = {
        (route.method, route.resource.canonical)
        for route in bots.create_app(settings).router.routes()
        if route.resource is not None
        and route.method not in ("HEAD", "OPTIONS")
        and route.resource.canonical.startswith("/api/")
    }
    assert served == documented
