"""Which outbound messages were handed to their channel, so that no message is sent twice.

Before a hand-off (a socket.io push, or a produce to platform.outbound) the sender *claims* the
message: a Redis key set only if absent, with a short lease. After the broker's ack it turns the
claim into a lasting mark. Another worker holding the same records — during a rebalance both
the old and the new owner of a partition can be working on one batch — finds the claim and
waits until the mark appears (nothing to send) or the lease runs out (the claimer died before
sending: it sends). Only a worker killed between the ack and the mark, a single Redis round
trip, leaves a message to be sent again under the same id, for the receiving side to drop.

Marks live in Redis rather than MongoDB because every delivery checks them: a batch of claims
is one pipeline, where FerretDB scans its collection for each id it does not have.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from redis.asyncio import Redis

#: How long a mark is kept: far longer than a record can wait on its topic to be redelivered.
MARK_TTL_S = 7 * 24 * 3600
#: How long a claim holds before another worker may take the message over.
CLAIM_TTL_S = 15.0
DELIVERED = b"delivered"


def mark_key(message_id: str) -> str:
    return f"delivered:{message_id}"


class DeliveryMarks:
    def __init__(self, redis: Redis, claim_ttl_s: float = CLAIM_TTL_S) -> None:
        self._redis = redis
        self._claim_ttl_ms = int(claim_ttl_s * 1000)

    async def claim(self, message_ids: Iterable[str], owner: str) -> set[str]:
        """The ids this caller may hand off now; waits out other callers' claims first.

        An id already marked delivered is not returned; one claimed by another caller is
        returned only once that claim has lapsed without a mark.
        """
        pending = list(dict.fromkeys(message_ids))
        claimed: set[str] = set()
        deadline = time.monotonic() + self._claim_ttl_ms / 1000 + 5
        while pending:
            async with self._redis.pipeline(transaction=False) as pipe:
                for message_id in pending:
                    pipe.set(mark_key(message_id), owner, nx=True, px=self._claim_ttl_ms)
                    pipe.get(mark_key(message_id))
                answers = await pipe.execute()
            waiting = []
            for index, message_id in enumerate(pending):
                won, holder = answers[2 * index], answers[2 * index + 1]
                if won or holder == owner.encode():
                    claimed.add(message_id)
                elif holder != DELIVERED:
                    waiting.append(message_id)  # another worker's claim: wait for its outcome
            pending = waiting
            if pending:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{len(pending)} message(s) stay claimed by another worker")
                await asyncio.sleep(0.2)
        return claimed

    async def mark(self, message_ids: Iterable[str]) -> None:
        """Record that these were handed off (after the broker's ack or the push)."""
        wanted = list(dict.fromkeys(message_ids))
        if not wanted:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for message_id in wanted:
                pipe.set(mark_key(message_id), DELIVERED, ex=MARK_TTL_S)
            await pipe.execute()
