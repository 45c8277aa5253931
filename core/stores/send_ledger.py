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

Kept in Redis, which must persist its writes (the local stack's and compose's Redis append every
write to their log, flushed every second); each key lives a week, far longer than a record can
wait to be redelivered.
"""

from __future__ import annotations

from enum import Enum

from redis.asyncio import Redis

LEDGER_TTL_S = 7 * 24 * 3600
SENT = b"sent"
UNCERTAIN = b"uncertain"


#: Set KEYS[1] to ARGV[2] (expiring in ARGV[3] s) only if it still holds ARGV[1].
_SWAP = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
    return 1
end
return 0
"""


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

    async def peek(self, piece_id: str, owner: str) -> Claim | None:
        """What ``claim`` would find, without claiming: None for a piece nobody holds."""
        held = await self._redis.get(ledger_key(piece_id))
        return None if held is None else await self._judge(held, owner)

    async def claim(self, piece_id: str, owner: str, *, take_uncertain: bool = False) -> Claim:
        """Claim ``piece_id`` for ``owner``.

        ``take_uncertain`` claims a piece whose claimer stopped without saying, or that was
        marked uncertain: an operator re-drove it, or its receiver drops repeats by id.
        """
        key = ledger_key(piece_id)
        value = f"sending:{owner}"
        if await self._redis.set(key, value, nx=True, ex=LEDGER_TTL_S):
            return Claim.MINE
        held = await self._redis.get(key)
        if held is None:  # expired between the two calls
            return await self.claim(piece_id, owner, take_uncertain=take_uncertain)
        found = await self._judge(held, owner)
        if found is not Claim.UNCERTAIN or not take_uncertain:
            return found
        # Compare and set: only the value read is replaced, so two takers cannot both win.
        swapped = await self._redis.eval(_SWAP, 1, key, held, value, LEDGER_TTL_S)
        return Claim.MINE if swapped == 1 else Claim.BUSY

    async def _judge(self, held: bytes | str, owner: str) -> Claim:
        if held == SENT:
            return Claim.SENT
        claimer = _text(held).removeprefix("sending:") if held != UNCERTAIN else ""
        if claimer == owner:
            return Claim.MINE  # this worker's own claim: an attempt it is retrying
        if claimer and await self._redis.exists(alive_key(claimer)):
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
