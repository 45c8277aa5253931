"""Delivery claims and marks against the real Redis."""

from __future__ import annotations

import asyncio

from core.clients.cache import new_redis
from core.ids import new_id
from core.settings import Settings
from core.stores.delivery_marks import DeliveryMarks


async def test_a_claimed_message_waits_for_its_claimer(settings: Settings) -> None:
    redis = new_redis(settings)
    marks = DeliveryMarks(redis, claim_ttl_s=5)
    ids = [new_id("bt"), new_id("bt")]
    try:
        assert await marks.claim(ids, "claim:old-owner") == set(ids)
        rival = asyncio.ensure_future(marks.claim(ids, "claim:new-owner"))
        await asyncio.sleep(0.5)
        assert not rival.done(), "the other worker waits while the claim holds"
        await marks.mark(ids)
        assert await rival == set(), "marked by the claimer: nothing left to send"
        assert await marks.claim(ids, "claim:third") == set()
    finally:
        await redis.aclose()


async def test_a_claim_whose_owner_died_lapses(settings: Settings) -> None:
    redis = new_redis(settings)
    marks = DeliveryMarks(redis, claim_ttl_s=0.5)
    ids = [new_id("bt")]
    try:
        assert await marks.claim(ids, "claim:killed") == set(ids)
        assert await marks.claim(ids, "claim:survivor") == set(ids), "taken over after the lease"
        assert await marks.claim(ids, "claim:survivor") == set(ids), "a retry of its own claim"
    finally:
        await redis.aclose()
