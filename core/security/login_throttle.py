"""Sign-in throttling in Redis: slow a password guesser without locking the owner out.

Three fixed windows (``core.security.rate_limits``), all keyed whether or not the account
exists, so a 429 tells nothing about it:

- per (account, address): the account's limit as seen from one client. An attacker's wrong
  guesses fill their own pair, not the owner's, who signs in from another address meanwhile;
- per address, across accounts: one client trying many accounts;
- per account, from everywhere: a ceiling with a short window, so that many addresses together
  still get few guesses, and the owner waits at most that short window while they try.

Every attempt takes a slot before the password is checked (so parallel guesses cannot all slip
in under the limit), and a refused attempt takes none (a refused attacker cannot go on filling
the account's ceiling). A successful sign-in empties its pair and gives back its other slots.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from core.security.rate_limits import Limit, RateLimits
from core.security.throttle_keys import address_bucket, give_back, hashed, refuse
from core.settings import Settings

MESSAGE = "too many sign-in attempts; try again later"


@dataclass(frozen=True)
class Limits:
    per_account_address: int = 5
    per_address: int = 30
    window_s: int = 15 * 60
    per_account: int = 20
    account_window_s: int = 5 * 60

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            per_account_address=settings.login_attempts_per_account_address,
            per_address=settings.login_attempts_per_address,
            window_s=settings.login_window_s,
            per_account=settings.login_attempts_per_account,
            account_window_s=settings.login_account_window_s,
        )


def pair_key(email: str, address: str) -> str:
    return "login:fail:pair:" + hashed(email, address_bucket(address))


def address_key(address: str) -> str:
    return "login:fail:ip:" + address_bucket(address)


def account_key(email: str) -> str:
    return "login:fail:account:" + hashed(email)


class LoginThrottle:
    def __init__(self, redis: Redis, limits: Limits = Limits()) -> None:
        self._redis = redis
        self._windows = RateLimits(redis)
        self._limits = limits

    def _limits_for(self, email: str, address: str) -> list[Limit]:
        limits = self._limits
        return [
            Limit(pair_key(email, address), limits.per_account_address, limits.window_s),
            Limit(address_key(address), limits.per_address, limits.window_s),
            Limit(account_key(email), limits.per_account, limits.account_window_s),
        ]

    async def take(self, email: str, address: str) -> None:
        """Count an attempt for ``email`` from ``address``; TooManyRequests if over a limit."""
        refuse(await self._windows.take(self._limits_for(email, address)), MESSAGE)

    async def succeeded(self, email: str, address: str) -> None:
        await self._redis.delete(pair_key(email, address))
        await give_back(self._redis, address_key(address), account_key(email))
