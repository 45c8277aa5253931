"""Redis through ``redis.asyncio`` (the successor of aioredis): caches, fan-out, rate limits."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis

from core.settings import Settings

#: Connections one client opens at most; beyond that, commands wait for a free one.
MAX_CONNECTIONS = 200


def new_redis(settings: Settings, *, timeout: float = 5.0) -> Redis:
    """A pooled client; it connects on first use, so a service starts while Redis is down.

    The pool makes a command wait (up to ``timeout``) for a free connection once all are busy:
    redis-py's default pool fails it at once instead, and a burst of widget reconnections (every
    client of a restarted socket service) had 100 of them refused that way.
    """
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=MAX_CONNECTIONS,
        timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
    )
    return Redis.from_pool(pool)
