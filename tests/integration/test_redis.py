"""Redis through redis.asyncio: commands and pub/sub (which socket.io's Redis manager relies on)."""

from __future__ import annotations

import asyncio
import uuid

from core.clients.cache import new_redis
from core.settings import Settings


async def test_set_get_expire(settings: Settings) -> None:
    redis = new_redis(settings)
    key = f"test:{uuid.uuid4().hex}"
    try:
        assert await redis.set(key, "value", ex=30)
        assert await redis.get(key) == b"value"
        assert 0 < await redis.ttl(key) <= 30
        assert await redis.delete(key) == 1
        assert await redis.get(key) is None
    finally:
        await redis.aclose()


async def test_publish_reaches_subscriber(settings: Settings) -> None:
    redis = new_redis(settings)
    channel = f"test:{uuid.uuid4().hex}"
    pubsub = redis.pubsub()
    try:
        await pubsub.subscribe(channel)
        assert await redis.publish(channel, "ping") == 1
        message = None
        async with asyncio.timeout(5):
            while message is None:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
        assert message["data"] == b"ping"
    finally:
        await pubsub.aclose()
        await redis.aclose()
