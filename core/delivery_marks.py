"""Which outbound messages were already handed to their channel, so a redelivery is not resent.

A mark is set right after the hand-off (a socket.io push, or the broker's ack on
platform.outbound) and checked before it. A worker killed between the two resends that one
message on redelivery, under the same id, for the receiving side to drop; nothing else is sent
twice. Marks live in Redis rather than MongoDB because every delivery checks them: a batch of
lookups is one MGET, where FerretDB scans its collection for each id it does not have.
"""

from __future__ import annotations

from collections.abc import Iterable

from redis.asyncio import Redis

#: How long a mark is kept: far longer than a record can wait on its topic to be redelivered.
MARK_TTL_S = 7 * 24 * 3600


def mark_key(message_id: str) -> str:
    return f"delivered:{message_id}"


class DeliveryMarks:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def delivered(self, message_ids: Iterable[str]) -> set[str]:
        """The ids among ``message_ids`` that were already handed off."""
        wanted = list(dict.fromkeys(message_ids))
        if not wanted:
            return set()
        found = await self._redis.mget([mark_key(m) for m in wanted])
        return {m for m, mark in zip(wanted, found, strict=True) if mark is not None}

    async def mark(self, message_ids: Iterable[str]) -> None:
        wanted = list(dict.fromkeys(message_ids))
        if not wanted:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for message_id in wanted:
                pipe.set(mark_key(message_id), b"1", ex=MARK_TTL_S)
            await pipe.execute()
