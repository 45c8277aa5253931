"""Redis through ``redis.asyncio`` (the successor of aioredis): caches, fan-out, rate limits."""

from __future__ import annotations

from redis.asyncio import Redis

from core.settings import Settings


def new_redis(settings: Settings, *, timeout: float = 5.0) -> Redis:
    """A pooled client; it connects on first use, so a service starts while Redis is down."""
    return Redis.from_url(
        settings.redis_url, socket_timeout=timeout, socket_connect_timeout=timeout
    )
