"""With Kafka or the MongoDB-wire server stopped, /readyz answers 503 naming it; nothing crashes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from core.settings import Settings
from infra.services import SERVICE_CLASSES
from infra.stack import ensure_up
from web import conversations, files, users

Client = TestClient[web.Request, web.Application]


@asynccontextmanager
async def stopped(settings: Settings, name: str) -> AsyncIterator[None]:
    """Stop a local service for the block, then start it again (infra code is synchronous)."""
    service = SERVICE_CLASSES[name](settings)
    stopped_it = await asyncio.to_thread(service.process.stop)
    assert stopped_it, f"{name} is not managed by Switchboard here; stop it yourself"
    try:
        yield
    finally:
        await asyncio.to_thread(ensure_up, service)


@pytest.fixture
async def conversations_client(settings: Settings) -> AsyncIterator[Client]:
    async with TestClient(TestServer(conversations.create_app(settings))) as client:
        yield client


async def test_ready_when_everything_is_up(conversations_client: Client) -> None:
    response = await conversations_client.get("/readyz")
    assert response.status == 200
    assert (await response.json())["checks"] == {"mongodb": "ok", "redis": "ok", "kafka": "ok"}


async def test_mongodb_down(settings: Settings, conversations_client: Client) -> None:
    async with stopped(settings, "ferretdb"):
        response = await conversations_client.get("/readyz")
        body = await response.json()
        assert response.status == 503
        assert body["error"]["code"] == "not_ready"
        assert body["error"]["details"] == {"down": ["mongodb"]}
        assert "mongodb" in body["error"]["message"]
        assert body["checks"]["kafka"] == "ok"
        assert (await conversations_client.get("/healthz")).status == 200
    assert (await conversations_client.get("/readyz")).status == 200


async def test_kafka_down(settings: Settings, conversations_client: Client) -> None:
    async with stopped(settings, "kafka"):
        response = await conversations_client.get("/readyz")
        body = await response.json()
        assert response.status == 503
        assert body["error"]["details"] == {"down": ["kafka"]}
        assert body["checks"]["mongodb"] == "ok"
        assert (await conversations_client.get("/healthz")).status == 200
    assert (await conversations_client.get("/readyz")).status == 200


async def test_redis_and_s3_are_checked(settings: Settings) -> None:
    async with TestClient(TestServer(users.create_app(settings))) as client:
        assert set((await (await client.get("/readyz")).json())["checks"]) == {"mongodb", "redis"}
    async with TestClient(TestServer(files.create_app(settings))) as client:
        assert set((await (await client.get("/readyz")).json())["checks"]) == {"mongodb", "s3"}
    async with stopped(settings, "redis"):
        async with TestClient(TestServer(users.create_app(settings))) as client:
            response = await client.get("/readyz")
            assert response.status == 503
            assert (await response.json())["error"]["details"] == {"down": ["redis"]}
