"""What the throttles of the unauthenticated routes count by, and their shared helpers.

An IPv6 address counts as its /64: one host commonly holds a whole /64, so counting single
IPv6 addresses would be no limit at all. Emails are hashed so that they do not sit in Redis in
the clear. The windows themselves are ``core.security.rate_limits``.
"""

from __future__ import annotations

import hashlib
import ipaddress

from redis.asyncio import Redis

from core.errors import TooManyRequests
from core.security.rate_limits import Refusal

# Gives back one hit per key, never creating a key (a DECR on a missing key would make one
# without an expiry).
_GIVE_BACK = """
for _, key in ipairs(KEYS) do
  if tonumber(redis.call('GET', key) or '0') > 0 then redis.call('DECR', key) end
end
return 0
"""


def address_bucket(address: str) -> str:
    """An IPv4 address itself, an IPv6 address's /64 (an IPv4-mapped one as IPv4)."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


def hashed(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]


def refuse(refusal: Refusal | None, message: str) -> None:
    """TooManyRequests, with the wait, when a limit was full."""
    if refusal is not None:
        raise TooManyRequests(message, retry_after_s=refusal.retry_after_s)


async def give_back(redis: Redis, *keys: str) -> None:
    """One hit back in each of these windows that is still open."""
    if keys:
        await redis.eval(_GIVE_BACK, len(keys), *keys)
