"""Which pieces of outbound text a platform has taken, so that none is ever sent twice.

Platforms' send APIs take no idempotency key: a message sent twice shows twice. So a piece is
*claimed* durably before its request leaves (``sending:<owner>``) and marked ``sent`` once the
platform answered. A worker killed between the platform's answer and the mark leaves the claim:
the record is redelivered, finds a claim by a worker that is gone (its heartbeat key has
lapsed), and does not send again.
Between the claim and the request leaving, a kill leaves the same claim for a message that never
left: the two cannot be told apart, so such a piece is *uncertain*, never sent again by itself,
and announced to operators, who may send it again (``switchboard replay redrive``). The window
is a few milliseconds of the sender's own work per piece.

Kept in Redis, written with the server's fsync policy (the local stack's Redis appends every
write to its log); each key lives a week, far longer than a record can wait to be redelivered.
"""

from __future__ import annotations

from enum import Enum

from redis.asyncio import Redis

LEDGER_TTL_S = 7 * 24 * 3600
SENT = b"sent"
UNCERTAIN = b"uncertain"


class Claim(Enum):
    MINE = "mine"  # send it
    SENT = "sent"  # already sent: skip it
    UNCERTAIN = "uncertain"  # another worker claimed it and never said: do not send
    BUSY = "busy"  # another worker is sending it right now: wait


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def ledger_key(piece_id: str) -> str:
    return f"platform-send:{piece_id}"


def alive_key(owner: str) -> str:
    return f"platform-send:alive:{owner}"


class SendLedger:
    def __init__(self, redis: Redis, *, heartbeat_ttl_s: float = 6.0) -> None:
        self._redis = redis
        #: A sender refreshes its heartbeat well within this; one not seen for this long is gone.
        self.heartbeat_ttl_s = heartbeat_ttl_s

    async def heartbeat(self, owner: str) -> None:
        """Say that ``owner`` is alive, for ``heartbeat_ttl_s``: its claims are in progress."""
        await self._redis.set(alive_key(owner), b"1", px=int(self.heartbeat_ttl_s * 1000))

    async def claim(self, piece_id: str, owner: str, *, redriven: bool = False) -> Claim:
        """Claim ``piece_id`` for ``owner``. A redriven record may take an uncertain piece:
        an operator decided to send it again."""
        key = ledger_key(piece_id)
        value = f"sending:{owner}"
        if await self._redis.set(key, value, nx=True, ex=LEDGER_TTL_S):
            return Claim.MINE
        held = await self._redis.get(key)
        if held is None:  # expired between the two calls
            return await self.claim(piece_id, owner, redriven=redriven)
        if held == SENT:
            return Claim.SENT
        if held == UNCERTAIN:
            if redriven:
                await self._redis.set(key, value, ex=LEDGER_TTL_S)
                return Claim.MINE
            return Claim.UNCERTAIN
        claimer = _text(held).removeprefix("sending:")
        if claimer == owner:
            return Claim.MINE  # this worker's own claim: an attempt it is retrying
        if await self._redis.exists(alive_key(claimer)):
            return Claim.BUSY  # its claimer is sending it now (both hold it in a rebalance)
        return Claim.UNCERTAIN

    async def sent(self, piece_id: str) -> None:
        await self._redis.set(ledger_key(piece_id), SENT, ex=LEDGER_TTL_S)

    async def release(self, piece_id: str, owner: str) -> None:
        """The platform refused the piece for sure (an error answer): it was not sent, and a
        later attempt may claim it afresh."""
        key = ledger_key(piece_id)
        held = await self._redis.get(key)
        if held is not None and _text(held) == f"sending:{owner}":
            await self._redis.delete(key)

    async def uncertain(self, piece_id: str) -> None:
        await self._redis.set(ledger_key(piece_id), UNCERTAIN, ex=LEDGER_TTL_S)
