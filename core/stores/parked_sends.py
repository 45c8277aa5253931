"""Sends waiting for a receiver to come back, parked in Redis on a schedule that survives
restarts, one ordered queue per conversation.

The API channel's receiver is a tenant's own server, which may be away for hours. Waiting for it
inside the sender's lane would hold a Kafka record unacked and one of the worker's slots for that
long, and enough of one tenant's conversations would stop every other tenant's sends. So a send
that fails is *parked*: its record goes to the end of its conversation's queue, the queue gets a
due time, and the record is acked. Later records of a parked conversation queue behind it, so
the order within a conversation holds. Any worker takes due queues (``take_due`` leases them, so
two workers do not run one queue at once; a lease that lapses with its worker is taken again)
and sends each queue's head until the receiver refuses again or the queue is empty.
"""

from __future__ import annotations

import time

from redis.asyncio import Redis

DUE = "parked-sends:due"

#: Every queue due by ARGV[1] (at most ARGV[3]), its due time moved to ARGV[2] (its lease).
_TAKE_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
for _, member in ipairs(due) do
    redis.call('ZADD', KEYS[1], 'XX', ARGV[2], member)
end
return due
"""
#: Drop the head of queue KEYS[2] (its attempts in KEYS[3]); an empty queue leaves the schedule,
#: a non-empty one is due at once (ARGV[2]) for its next record.
_POP = """
redis.call('LPOP', KEYS[2])
redis.call('DEL', KEYS[3])
if redis.call('LLEN', KEYS[2]) == 0 then
    redis.call('ZREM', KEYS[1], ARGV[1])
else
    redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
end
return 1
"""


def queue_key(conversation_id: str) -> str:
    return f"parked-sends:queue:{conversation_id}"


def attempts_key(conversation_id: str) -> str:
    return f"parked-sends:attempts:{conversation_id}"


class ParkedSends:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def waiting(self, conversation_id: str) -> bool:
        """Whether the conversation has sends parked: a new one must queue behind them."""
        return bool(await self._redis.exists(queue_key(conversation_id)))

    async def park(self, conversation_id: str, record: bytes, due_at: float) -> None:
        """Queue ``record`` last; a queue that had no due time gets ``due_at``."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.rpush(queue_key(conversation_id), record)
            pipe.zadd(DUE, {conversation_id: due_at}, nx=True)
            await pipe.execute()

    async def take_due(self, lease_s: float, limit: int = 50) -> list[str]:
        """Conversations whose queue is due, leased to the caller for ``lease_s``."""
        now = time.time()
        taken = await self._redis.eval(_TAKE_DUE, 1, DUE, now, now + lease_s, limit)
        return [m.decode() if isinstance(m, bytes) else str(m) for m in taken]

    async def head(self, conversation_id: str) -> bytes | None:
        found = await self._redis.lindex(queue_key(conversation_id), 0)
        return found.encode() if isinstance(found, str) else found

    async def attempts(self, conversation_id: str) -> int:
        return int(await self._redis.get(attempts_key(conversation_id)) or 0)

    async def done(self, conversation_id: str) -> None:
        """The head was sent (or given up on): the next record is due at once."""
        await self._redis.eval(
            _POP,
            3,
            DUE,
            queue_key(conversation_id),
            attempts_key(conversation_id),
            conversation_id,
            time.time(),
        )

    async def retry_at(self, conversation_id: str, due_at: float, attempts: int) -> None:
        """The head failed again: due at ``due_at``, after ``attempts`` attempts."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(attempts_key(conversation_id), attempts)
            pipe.zadd(DUE, {conversation_id: due_at}, xx=True)
            await pipe.execute()
