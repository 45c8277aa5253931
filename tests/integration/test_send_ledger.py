"""The send ledger on the real Redis: a piece is claimed once, and a stopped claimer's piece is
never sent again by itself."""

from __future__ import annotations

import asyncio
import uuid

from redis.asyncio import Redis

from core.stores.send_ledger import Claim, SendLedger, ledger_key


def _piece() -> str:
    return f"bt_{uuid.uuid4().hex}"


async def test_one_claimant_of_many_wins_and_a_sent_piece_stays_sent(redis: Redis) -> None:
    ledger = SendLedger(redis)
    piece = _piece()
    for owner in range(20):
        await ledger.heartbeat(f"w{owner}")
    claims = await asyncio.gather(*(ledger.claim(piece, f"w{i}") for i in range(20)))
    assert claims.count(Claim.MINE) == 1
    assert set(claims) == {Claim.MINE, Claim.BUSY}
    winner = f"w{claims.index(Claim.MINE)}"
    assert await ledger.peek(piece, winner) is Claim.MINE
    assert await ledger.peek(piece, "w_other") is Claim.BUSY
    assert await ledger.peek(_piece(), winner) is None
    assert await ledger.claim(piece, winner) is Claim.MINE  # its own retry
    await ledger.sent(piece)
    assert {await ledger.claim(piece, owner) for owner in ("w0", "w19", winner)} == {Claim.SENT}


async def test_the_claim_of_a_stopped_worker_is_uncertain_until_redriven(redis: Redis) -> None:
    ledger = SendLedger(redis, heartbeat_ttl_s=0.2)
    piece = _piece()
    await ledger.heartbeat("stopped")
    assert await ledger.claim(piece, "stopped") is Claim.MINE
    assert await ledger.claim(piece, "next") is Claim.BUSY  # its claimer is alive
    await asyncio.sleep(0.3)  # and then not: its heartbeat lapsed
    assert await ledger.claim(piece, "next") is Claim.UNCERTAIN
    await ledger.uncertain(piece)
    assert await ledger.claim(piece, "later") is Claim.UNCERTAIN
    for n in range(10):  # takers are live senders, as a claimer's liveness decides
        await ledger.heartbeat(f"taker{n}")
    takers = await asyncio.gather(
        *(ledger.claim(piece, f"taker{n}", take_uncertain=True) for n in range(10))
    )
    assert takers.count(Claim.MINE) == 1  # one of the takers, however many ask at once
    await ledger.uncertain(piece)
    await ledger.heartbeat("operator")
    assert await ledger.claim(piece, "operator", take_uncertain=True) is Claim.MINE
    assert await ledger.claim(piece, "other", take_uncertain=True) is Claim.BUSY
    assert 0 < await redis.ttl(ledger_key(piece)) <= 7 * 24 * 3600


async def test_a_refused_send_is_released_for_its_owner_only(redis: Redis) -> None:
    ledger = SendLedger(redis)
    piece = _piece()
    await ledger.heartbeat("a")
    assert await ledger.claim(piece, "a") is Claim.MINE
    await ledger.release(piece, "b")
    assert await ledger.claim(piece, "b") is Claim.BUSY
    await ledger.release(piece, "a")
    assert await ledger.claim(piece, "b") is Claim.MINE
