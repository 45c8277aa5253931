"""Where a turn waits for its tool calls' results.

Results come back on function.results, which is partitioned like agent.requests, so they
normally reach the worker whose turn asked: the listener agent (``agents.function_call``)
hands each to the waiting turn. During a rebalance a result can land on another worker, so a
turn that waits longer than a moment also looks in Redis, where the function-call stage keeps
every result by call id.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from redis.asyncio import Redis

from streams.records import FunctionResult, decode, encode

#: How long a result is kept for a turn (or a repeated one) to find.
RESULT_TTL_S = 24 * 3600
#: How often a waiting turn looks in Redis for results that went to another worker.
POLL_S = 0.5


def result_key(call_id: str) -> str:
    return f"fnresult:{call_id}"


async def keep_result(redis: Redis, result: FunctionResult) -> None:
    await redis.set(result_key(result.call_id), encode(result), ex=RESULT_TTL_S)


async def kept_result(redis: Redis, call_id: str) -> FunctionResult | None:
    raw = await redis.get(result_key(call_id))
    if raw is None:
        return None
    record = decode(raw)
    return record if isinstance(record, FunctionResult) else None


class ToolResults:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._waiting: dict[str, asyncio.Future[FunctionResult]] = {}

    def deliver(self, result: FunctionResult) -> None:
        """A result from function.results: wakes the turn waiting for it, if it is here."""
        future = self._waiting.get(result.call_id)
        if future is not None and not future.done():
            future.set_result(result)

    def expect(self, call_ids: Sequence[str]) -> None:
        """Register interest before the calls go out, so no result can arrive unseen."""
        loop = asyncio.get_running_loop()
        for call_id in call_ids:
            self._waiting.setdefault(call_id, loop.create_future())

    async def wait(self, call_ids: Sequence[str]) -> dict[str, FunctionResult]:
        """Every call's result; the caller bounds how long (the turn's time limit)."""
        self.expect(call_ids)
        futures = {call_id: self._waiting[call_id] for call_id in call_ids}
        try:
            while True:
                pending = [f for f in futures.values() if not f.done()]
                if not pending:
                    return {call_id: future.result() for call_id, future in futures.items()}
                await asyncio.wait(pending, timeout=POLL_S)
                for call_id, future in futures.items():
                    if not future.done():
                        kept = await kept_result(self._redis, call_id)
                        if kept is not None:
                            future.set_result(kept)
        finally:
            for call_id in call_ids:
                self._waiting.pop(call_id, None)
