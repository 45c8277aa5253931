"""Parked sends on the real Redis: one ordered queue per conversation, taken by one worker at a
time when due, and taken again when its taker's lease lapses."""

from __future__ import annotations

import asyncio
import time
import uuid

from redis.asyncio import Redis

from core.stores.parked_sends import ParkedSends


def _conversation() -> str:
    return f"cv_{uuid.uuid4().hex}"


async def _due_of_mine(parked: ParkedSends, mine: set[str], lease_s: float) -> list[str]:
    return [c for c in await parked.take_due(lease_s, limit=10_000) if c in mine]


async def test_a_queue_keeps_its_order_and_leaves_the_schedule_when_empty(redis: Redis) -> None:
    parked = ParkedSends(redis)
    conversation = _conversation()
    assert not await parked.waiting(conversation)
    for n in range(3):
        await parked.park(conversation, f"record {n}".encode(), due_at=time.time())
    assert await parked.waiting(conversation)
    assert await _due_of_mine(parked, {conversation}, 60) == [conversation]
    assert await _due_of_mine(parked, {conversation}, 60) == []  # leased to the first taker
    sent = []
    while (head := await parked.head(conversation)) is not None:
        sent.append(head)
        await parked.done(conversation)
    assert sent == [b"record 0", b"record 1", b"record 2"]
    assert not await parked.waiting(conversation)
    assert await _due_of_mine(parked, {conversation}, 60) == []


async def test_a_failed_head_waits_its_turn_and_a_lapsed_lease_is_taken_again(
    redis: Redis,
) -> None:
    parked = ParkedSends(redis)
    later, lapsing = _conversation(), _conversation()
    await parked.park(later, b"a", due_at=time.time())
    await parked.park(lapsing, b"b", due_at=time.time())
    mine = {later, lapsing}
    assert set(await _due_of_mine(parked, mine, lease_s=0.2)) == mine
    await parked.retry_at(later, time.time() + 60, attempts=3)
    assert await parked.attempts(later) == 3
    await asyncio.sleep(0.3)  # the other's taker stopped: its lease lapses
    assert await _due_of_mine(parked, mine, 60) == [lapsing]
    await parked.done(lapsing)
    await parked.done(later)
    assert await parked.attempts(later) == 0


async def test_parking_behind_keeps_the_queue_due_time(redis: Redis) -> None:
    parked = ParkedSends(redis)
    conversation = _conversation()
    await parked.park(conversation, b"first", due_at=time.time() + 60)
    await parked.park(conversation, b"second", due_at=time.time())  # queued behind: not due
    assert await _due_of_mine(parked, {conversation}, 60) == []
    await parked.retry_at(conversation, time.time(), attempts=1)
    assert await _due_of_mine(parked, {conversation}, 60) == [conversation]
    await parked.done(conversation)
    assert await parked.head(conversation) == b"second"
    await parked.done(conversation)
