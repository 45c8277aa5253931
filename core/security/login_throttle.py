"""Sign-in throttling in Redis: fixed windows per account and per client address.

Every attempt takes a slot before the password is checked (so parallel guesses cannot all slip
in under the limit); a successful sign-in gives the slots back (the account's all of them, the
address's one). A window expires on its own: there is no permanent lockout. The account key is
the normalised email whether or not such an account exists, so a 429 tells nothing about it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import cast

from redis.asyncio import Redis

from core.errors import TooManyRequests

# KEYS: the counters. ARGV[1]: the window in seconds. Each counter is incremented and given the
# window's expiry when it is new (or somehow has none); returns count and TTL per key.
_TAKE = """
local out = {}
for i, key in ipairs(KEYS) do
  local n = redis.call('INCR', key)
  local ttl = redis.call('TTL', key)
  if n == 1 or ttl < 0 then
    redis.call('EXPIRE', key, ARGV[1])
    ttl = tonumber(ARGV[1])
  end
  out[#out + 1] = n
  out[#out + 1] = ttl
end
return out
"""

# Gives back one slot, never creating a key (a DECR on a missing key would make one forever).
_GIVE_BACK = """
if redis.call('EXISTS', KEYS[1]) == 1 and tonumber(redis.call('GET', KEYS[1])) > 0 then
  return redis.call('DECR', KEYS[1])
end
return 0
"""


@dataclass(frozen=True)
class Limits:
    per_account: int = 5
    per_address: int = 30
    window_s: int = 15 * 60


def account_key(email: str) -> str:
    # Hashed so that addresses do not sit in Redis in the clear.
    return "login:fail:account:" + hashlib.sha256(email.encode()).hexdigest()[:32]


def address_key(address: str) -> str:
    return f"login:fail:ip:{address}"


class LoginThrottle:
    def __init__(self, redis: Redis, limits: Limits = Limits()) -> None:
        self._redis = redis
        self._limits = limits

    async def take(self, email: str, address: str) -> None:
        """Count an attempt for ``email`` from ``address``; TooManyRequests if over a limit."""
        counts = cast(
            list[int],
            await self._redis.eval(
                _TAKE, 2, account_key(email), address_key(address), str(self._limits.window_s)
            ),
        )
        by_account, account_ttl, by_address, address_ttl = (int(v) for v in counts)
        waits = []
        if by_account > self._limits.per_account:
            waits.append(account_ttl)
        if by_address > self._limits.per_address:
            waits.append(address_ttl)
        if waits:
            raise TooManyRequests(
                "too many sign-in attempts; try again later", retry_after_s=max(1, max(waits))
            )

    async def succeeded(self, email: str, address: str) -> None:
        await self._redis.delete(account_key(email))
        await self._redis.eval(_GIVE_BACK, 1, address_key(address))
