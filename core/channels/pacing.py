"""Sends paced to a platform's documented rates: per chat and per bot, as token buckets.

A conversation that must wait sleeps in its own lane, so other conversations go on. The buckets
live in the worker that sends (a conversation's sends all go through one worker, since its
records share a partition); a bot whose chats are spread over several workers can still meet
the platform's limit, which answers 429, and the sender waits as told.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from core.channels.base import RateLimits

#: Buckets kept per kind; the least recently used is forgotten past this (a forgotten chat
#: starts full again, which is what an idle chat's bucket would be anyway).
MAX_BUCKETS = 50_000


@dataclass
class TokenBucket:
    rate_per_s: float
    capacity: float
    tokens: float
    stamp: float

    def reserve(self, now: float) -> float:
        """Take the next token, now or in the future: how long until it is due (0.0: now).

        Tokens may go below zero, so callers that reserve one after another are spaced out in
        the order they asked, without polling.
        """
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate_per_s)
        self.stamp = now
        self.tokens -= 1
        return max(0.0, -self.tokens / self.rate_per_s)

    def hold(self, seconds: float, now: float) -> None:
        """Take nothing for ``seconds`` (the platform said to wait): empty until then."""
        self.tokens = min(self.tokens, 0.0) - seconds * self.rate_per_s
        self.stamp = now


class Pacer:
    """Waits before each send until the chat's and the bot's buckets both have a token."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: OrderedDict[tuple[str, ...], TokenBucket] = OrderedDict()

    def _bucket(self, key: tuple[str, ...], rate: float) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = TokenBucket(rate, 1.0, 1.0, self._clock())
            self._buckets[key] = bucket
            while len(self._buckets) > MAX_BUCKETS:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket

    async def wait(self, channel_id: str, chat_id: str, limits: RateLimits) -> None:
        chat = self._bucket(("chat", channel_id, chat_id), limits.per_chat_per_s)
        bot = self._bucket(("bot", channel_id), limits.per_bot_per_s)
        now = self._clock()
        wait = max(chat.reserve(now), bot.reserve(now))
        if wait > 0:
            await asyncio.sleep(wait)

    def hold(self, channel_id: str, chat_id: str, seconds: float, limits: RateLimits) -> None:
        """The platform answered 429 for this chat: nothing more to it for ``seconds``."""
        chat = self._bucket(("chat", channel_id, chat_id), limits.per_chat_per_s)
        chat.hold(seconds, self._clock())
