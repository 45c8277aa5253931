"""What operators see of a channel's health: last webhook, last send, last error, and today's
messages in and out. Kept in Redis (one hash per channel, one counter per day and direction),
written by the webhook ingress and the platform sender, read by the bots service.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

#: Day counters outlive their day by one, so "today" is readable around midnight UTC.
COUNTER_TTL_S = 2 * 24 * 3600
INBOUND, OUTBOUND = "in", "out"


def _status_key(channel_id: str) -> str:
    return f"channel:status:{channel_id}"


def _count_key(channel_id: str, direction: str, day: str) -> str:
    return f"channel:count:{channel_id}:{direction}:{day}"


def _today(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y%m%d")


class ChannelStatus:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def webhook_received(self, channel_id: str, messages: int) -> None:
        await self._record(channel_id, {"last_webhook_at": time.time()}, INBOUND, messages)

    async def webhook_dropped(self, channel_id: str, reason: str) -> None:
        """A delivery answered 200 but not taken (the channel is disconnected)."""
        now = time.time()
        fields: dict[str, str | float] = {
            "last_dropped_at": now,
            "last_dropped_reason": reason[:300],
        }
        await self._record(channel_id, fields, INBOUND, 0)

    async def webhook_refused(self, channel_id: str, reason: str) -> None:
        """A delivery answered 4xx (a wrong secret, a body that is not the platform's): the
        first thing to look at when a connected channel receives nothing."""
        fields: dict[str, str | float] = {
            "last_refused_at": time.time(),
            "last_refused_reason": reason[:300],
        }
        await self._record(channel_id, fields, INBOUND, 0)

    async def sent(self, channel_id: str, messages: int = 1) -> None:
        await self._record(channel_id, {"last_send_at": time.time()}, OUTBOUND, messages)

    async def failed(self, channel_id: str, reason: str) -> None:
        fields: dict[str, str | float] = {"last_error_at": time.time(), "last_error": reason[:300]}
        await self._record(channel_id, fields, OUTBOUND, 0)

    async def read(self, channel_id: str) -> dict[str, Any]:
        day = _today(time.time())
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(_status_key(channel_id))
            pipe.get(_count_key(channel_id, INBOUND, day))
            pipe.get(_count_key(channel_id, OUTBOUND, day))
            raw, inbound, outbound = await pipe.execute()
        fields = {k.decode(): v.decode() for k, v in raw.items()}

        def stamp(name: str) -> float | None:
            return float(fields[name]) if name in fields else None

        return {
            "last_webhook_at": stamp("last_webhook_at"),
            "last_send_at": stamp("last_send_at"),
            "last_error_at": stamp("last_error_at"),
            "last_error": fields.get("last_error"),
            "last_dropped_at": stamp("last_dropped_at"),
            "last_dropped_reason": fields.get("last_dropped_reason"),
            "last_refused_at": stamp("last_refused_at"),
            "last_refused_reason": fields.get("last_refused_reason"),
            "messages_in_today": int(inbound or 0),
            "messages_out_today": int(outbound or 0),
        }

    async def _record(
        self, channel_id: str, fields: dict[str, str | float], direction: str, messages: int
    ) -> None:
        now = time.time()
        async with self._redis.pipeline(transaction=False) as pipe:
            for name, value in fields.items():
                pipe.hset(_status_key(channel_id), name, value)
            if messages:
                key = _count_key(channel_id, direction, _today(now))
                pipe.incrby(key, messages)
                pipe.expire(key, COUNTER_TTL_S)
            await pipe.execute()
