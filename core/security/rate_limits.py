"""Fixed-window rate limits in Redis, shared by every process, checked several at a time.

A window opens with its key's first hit and lasts ``window_s`` (the key's expiry), so it needs
no clock agreement between processes. ``take`` is all or nothing: a hit counts against every
limit only when each has room, so a sender refused by one limit (a flooding visitor) spends
nothing of the others (their application's budget), and a refused hit costs nothing at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from redis.asyncio import Redis

# KEYS: the counters; ARGV: the limits, then the windows in seconds, one each per key.
# Returns {0, 0} once every counter took the hit, else {index (1-based), ms left} of the first
# full one, having changed nothing.
_TAKE = """
local n = #KEYS
for i = 1, n do
  local count = tonumber(redis.call('GET', KEYS[i]) or '0')
  if count >= tonumber(ARGV[i]) then
    local left = redis.call('PTTL', KEYS[i])
    if left < 0 then
      redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[n + i]) * 1000)
      left = tonumber(ARGV[n + i]) * 1000
    end
    return {i, left}
  end
end
for i = 1, n do
  if redis.call('INCR', KEYS[i]) == 1 or redis.call('PTTL', KEYS[i]) < 0 then
    redis.call('EXPIRE', KEYS[i], ARGV[n + i])
  end
end
return {0, 0}
"""


@dataclass(frozen=True)
class Limit:
    """At most ``limit`` hits on ``key`` in a window of ``window_s`` seconds."""

    key: str
    limit: int
    window_s: int = 60


@dataclass(frozen=True)
class Refusal:
    """The limit that was full, and the whole seconds until its window ends (at least 1)."""

    limit: Limit
    retry_after_s: int


class RateLimits:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def take(self, limits: Sequence[Limit]) -> Refusal | None:
        """Count one hit against every limit, or none if one of them is full: its refusal."""
        if not limits:
            return None
        keys = [limit.key for limit in limits]
        args = [str(limit.limit) for limit in limits] + [str(limit.window_s) for limit in limits]
        result = cast(list[int], await self._redis.eval(_TAKE, len(keys), *keys, *args))
        index, left_ms = (int(value) for value in result)
        if index == 0:
            return None
        return Refusal(limits[index - 1], max(1, -(-left_ms // 1000)))
