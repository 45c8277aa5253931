"""Model tokens per UTC day, per workspace and per application, counted in Redis.

A public widget key lets anyone start conversations, so what one application (and one
workspace) may spend on models in a day is bounded. Before a turn the AI stage asks whether
either budget is spent; after it, the turn's tokens are added to both counters. Adding is one
Lua script: it marks the request as counted and increments the day's counters together, so a
request redelivered after a crash is counted once even if its answered mark was never set.
Counters expire two days after their day begins.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

from redis.asyncio import Redis

from core.settings import Settings

DAY_S = 24 * 3600
#: How long a day's counter, and a request's counted mark, are kept.
KEEP_S = 2 * DAY_S

Scope = Literal["application", "workspace"]

_SPEND = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[2]) then
  for i = 2, #KEYS do
    redis.call('INCRBY', KEYS[i], ARGV[1])
    redis.call('EXPIRE', KEYS[i], ARGV[2])
  end
  return 1
end
return 0
"""


def day_of(now: float) -> str:
    return time.strftime("%Y%m%d", time.gmtime(now))


def used_key(scope: Scope, owner_id: str, day: str) -> str:
    return f"tokens:{day}:{scope}:{owner_id}"


def counted_key(request_id: str) -> str:
    return f"tokens:counted:{request_id}"


@dataclass(frozen=True)
class BudgetSpent:
    """A budget that is used up: the data of the ``budget.exceeded`` event."""

    scope: Scope
    limit: int
    used: int

    def event_data(self) -> dict[str, Any]:
        return {
            "budget": "tokens_per_day",
            "scope": self.scope,
            "limit": self.limit,
            "used": self.used,
        }


def application_limit(application: Mapping[str, Any], settings: Settings) -> int:
    """The application's daily tokens: its ``budget.tokens_per_day`` when that is a whole
    number of at least 0, else the default; never more than the workspace's."""
    budget = application.get("budget")
    override = budget.get("tokens_per_day") if isinstance(budget, Mapping) else None
    valid = isinstance(override, int) and not isinstance(override, bool) and override >= 0
    limit = cast(int, override) if valid else settings.application_tokens_per_day
    return min(limit, settings.workspace_tokens_per_day)


class TokenBudget:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self._redis = redis
        self._settings = settings

    async def spent(
        self,
        workspace_id: str,
        application_id: str,
        application: Mapping[str, Any],
        now: float | None = None,
    ) -> BudgetSpent | None:
        """The first budget used up today (the application's, then the workspace's), if any."""
        day = day_of(time.time() if now is None else now)
        limits: list[tuple[Scope, str, int]] = [
            ("application", application_id, application_limit(application, self._settings)),
            ("workspace", workspace_id, self._settings.workspace_tokens_per_day),
        ]
        used = await self._redis.mget([used_key(s, owner, day) for s, owner, _ in limits])
        for (scope, _, limit), value in zip(limits, used, strict=True):
            count = int(value or 0)
            if count >= limit:
                return BudgetSpent(scope, limit, count)
        return None

    async def spend(
        self,
        request_id: str,
        workspace_id: str,
        application_id: str,
        tokens: int,
        now: float | None = None,
    ) -> bool:
        """Add a turn's tokens to today's counters; False when the request was counted before."""
        if tokens <= 0:
            return False
        day = day_of(time.time() if now is None else now)
        keys = [
            counted_key(request_id),
            used_key("application", application_id, day),
            used_key("workspace", workspace_id, day),
        ]
        counted = await cast(Any, self._redis.eval(_SPEND, len(keys), *keys, tokens, KEEP_S))
        return bool(counted)
