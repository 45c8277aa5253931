"""Token buckets per chat and per bot, on a clock the test moves."""

from __future__ import annotations

import asyncio

import pytest

from core.channels.base import RateLimits
from core.channels.pacing import Pacer, TokenBucket

LIMITS = RateLimits(per_chat_per_s=1.0, per_bot_per_s=30.0)


def test_a_bucket_spaces_reservations_in_the_order_they_were_made() -> None:
    bucket = TokenBucket(rate_per_s=2.0, capacity=1.0, tokens=1.0, stamp=0.0)
    assert [bucket.reserve(0.0) for _ in range(4)] == [0.0, 0.5, 1.0, 1.5]
    assert bucket.reserve(10.0) == 0.0  # refilled, up to its capacity


def test_a_hold_empties_the_bucket_for_that_long() -> None:
    bucket = TokenBucket(rate_per_s=1.0, capacity=1.0, tokens=1.0, stamp=0.0)
    bucket.hold(5.0, 0.0)
    assert bucket.reserve(0.0) == pytest.approx(6.0)


async def test_the_pacer_waits_for_the_chat_and_the_bot(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(round(seconds, 3))

    monkeypatch.setattr(asyncio, "sleep", sleep)
    pacer = Pacer(clock=lambda: now[0])
    for _ in range(3):
        await pacer.wait("ch", "chat-1", LIMITS)
    assert slept == [1.0, 2.0]  # one a second in one chat
    slept.clear()
    for chat in range(31):
        await pacer.wait("ch2", f"chat-{chat}", LIMITS)
    # 30 a second across one bot's chats: each new chat waits its turn behind the others.
    assert slept == [round(k / 30, 3) for k in range(1, 31)]
    slept.clear()
    pacer.hold("ch", "chat-9", 7.0, LIMITS)
    await pacer.wait("ch", "chat-9", LIMITS)
    assert slept == [pytest.approx(8.0)]
