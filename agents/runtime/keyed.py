"""Records handled concurrently across conversations, in order within one, acked in offset order.

The AI stage waits seconds on a model. Handled one at a time, a slow conversation would hold up
every other conversation on its partition; Faust's ``concurrency>1`` would break the order within
a conversation. Here each key (conversation) has a lane: its records run one after another,
while lanes run side by side, up to a bound on records in flight (which also holds the stream
back when reached). A record is acked only when it and every earlier record of its partition
are done, so the committed offset never passes an unfinished record, and a crash loses nothing.

Faust's commit logic does not make out-of-order acks safe by itself: with the committed offset
at N and N+1 acked while N is still running, faust-streaming 0.15.3 commits N+2. So the acks
are released here in offset order.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from streams.faust_fixes import skips
from streams.faust_fixes.continuity import OffsetContinuity

log = logging.getLogger(__name__)

Handle = Callable[[Any], Awaitable[None]]
Ack = Callable[[Any], Awaitable[Any]]


@dataclass
class _Pending:
    event: Any
    done: bool = False


@dataclass
class InOrderAcks:
    """Releases acks per partition (and consumer generation) in the order records arrived."""

    ack: Ack
    _pending: dict[Hashable, deque[_Pending]] = field(default_factory=dict)
    _entries: dict[int, _Pending] = field(default_factory=dict)

    @staticmethod
    def _partition(event: Any) -> Hashable:
        message = event.message
        return (message.tp, getattr(message, "generation_id", None))

    def track(self, event: Any) -> None:
        entry = _Pending(event)
        self._pending.setdefault(self._partition(event), deque()).append(entry)
        self._entries[id(event)] = entry

    async def done(self, event: Any) -> None:
        entry = self._entries.pop(id(event))
        entry.done = True
        partition = self._partition(event)
        queue = self._pending[partition]
        while queue and queue[0].done:
            await self.ack(queue.popleft().event)
        if not queue:
            del self._pending[partition]

    @property
    def unacked(self) -> int:
        return sum(len(queue) for queue in self._pending.values())


class KeyedRunner:
    """Runs ``handle`` on each event: one at a time per key, many keys at once."""

    def __init__(self, handle: Handle, ack: Ack, max_in_flight: int) -> None:
        self._handle = handle
        self._acks = InOrderAcks(ack)
        self._slots = asyncio.Semaphore(max_in_flight)
        self._lanes: dict[Hashable, deque[Any]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, key: Hashable, event: Any) -> None:
        """Queue ``event`` on its key's lane; waits while ``max_in_flight`` records are running."""
        await self._slots.acquire()
        self._acks.track(event)
        lane = self._lanes.get(key)
        if lane is not None:
            lane.append(event)
            return
        self._lanes[key] = deque([event])
        task = asyncio.create_task(self._run_lane(key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_lane(self, key: Hashable) -> None:
        lane = self._lanes[key]
        while lane:
            event = lane[0]
            try:
                await self._handle(event)
            except asyncio.CancelledError:
                raise
            except Exception:
                # ``handle`` deals with its own failures (retries, dead letters): anything that
                # escapes is a bug. The lane stays, stopped: its key waits, unacked, for a
                # restart to redeliver it, while the other keys go on.
                log.exception("unhandled failure on key %r; its records wait unacked", key)
                return
            lane.popleft()
            await self._acks.done(event)
            self._slots.release()
        del self._lanes[key]

    @property
    def in_flight(self) -> int:
        return self._acks.unacked

    async def drain(self) -> None:
        """Wait until every submitted record is done (tests, and a graceful stop)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)


async def run_keyed(
    manual: Any, handle: Handle, stage: str, consumer: Any, max_in_flight: int
) -> None:
    """The body of a keyed agent: admit each record gap-free, run it on its key's lane, ack in
    offset order, until the stream stops. ``manual`` is the agent's ``stream.noack()``."""
    runner = KeyedRunner(handle, functools.partial(skips.ack, manual), max_in_flight)
    continuity = OffsetContinuity(stage, consumer)
    try:
        async for event in manual.events():
            for admitted in await continuity.admit([event]):
                await runner.submit(admitted.message.key, admitted)
    finally:
        await runner.cancel()
