"""Records taken a batch at a time, so that the writes of many records share their round trips.

One record at a time, a stage waits for each of its MongoDB writes and Kafka acks in turn: a
few milliseconds per record, whatever the load. Here a stage takes what its stream holds (up
to ``BATCH_MAX`` records, or whatever arrived within ``BATCH_WITHIN_S``), *plans* each record in
order — decodes and checks it, applies it to the conversation table in memory, and says what it
will write — and then *applies* the plans together: one ``insert_many`` per collection, and
every produce handed to the producer before any ack is awaited.

A batch's records are acked only after the batch is applied, so a crash repeats it; every
write is idempotent by id, which makes the repeat harmless. A record that fails its plan is
dead-lettered on its own. A batch whose writes fail for good is applied again one record at a
time, so that only a record that fails alone is dead-lettered.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from agents.runtime.failures import GaveUp, dead_letter, with_retries
from streams.faust_fixes import skips
from streams.faust_fixes.continuity import OffsetContinuity
from streams.faust_fixes.current_event import as_current

log = logging.getLogger(__name__)

#: The most records one batch takes.
BATCH_MAX = 500
#: How long a batch waits for more records: the latency a record pays at a low rate.
BATCH_WITHIN_S = 0.003

P = TypeVar("P")


class BatchStage(Protocol[P]):
    """A pipeline stage as the batch loop drives it."""

    name: str

    async def plan(self, raw: bytes, batch: BatchScope) -> P | None:
        """What one record will write; None when it writes nothing. May update tables."""
        ...

    async def apply(self, plans: Sequence[P]) -> None:
        """Carry out the plans of a batch (or of one record); idempotent, since it may repeat."""
        ...


@dataclass
class BatchScope:
    """What the records of one batch share: lookups made once per batch, not once per record."""

    lookups: dict[Any, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Planned(Generic[P]):
    event: Any
    plan: P


async def run_batches(stream: Any, stage: BatchStage[P], consumer: Any) -> None:
    """The body of a batching agent: take, plan, apply, ack, until the stream stops.

    The stream's events are acked here, in offset order, only once their batch is applied:
    not by Faust as they are taken (its ``take_events`` acks a batch even when the code using
    it was interrupted), so a record is committed only after its writes.
    """
    manual = stream.noack()
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=BATCH_MAX)
    pump = asyncio.create_task(_pump(manual, queue))
    continuity = OffsetContinuity(stage.name, consumer)
    try:
        while taken := await _take(queue, pump):
            events = await continuity.admit(taken)
            await handle_batch(events, stage)
            for event in events:
                await skips.ack(manual, event)
    finally:
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pump


async def _pump(stream: Any, queue: asyncio.Queue[Any]) -> None:
    async for event in stream.events():
        await queue.put(event)  # a full queue holds the stream back: Faust pauses fetching


async def _take(queue: asyncio.Queue[Any], pump: asyncio.Task[None]) -> list[Any]:
    """The next batch: the first event to arrive, and whatever follows within the window.

    Empty once the stream has ended (the worker is stopping); raises what the stream raised.
    """
    if queue.empty():
        getter = asyncio.ensure_future(queue.get())
        await asyncio.wait({getter, pump}, return_when=asyncio.FIRST_COMPLETED)
        if not getter.done():
            getter.cancel()
            pump.result()
            return []
        events = [getter.result()]
        await asyncio.sleep(BATCH_WITHIN_S)
    else:
        events = [queue.get_nowait()]
    while len(events) < BATCH_MAX and not queue.empty():
        events.append(queue.get_nowait())
    return events


DeadLetter = Callable[[Any, str, BaseException, int], Awaitable[None]]


async def handle_batch(
    events: Sequence[Any], stage: BatchStage[P], dead_letter: DeadLetter = dead_letter
) -> None:
    scope = BatchScope()
    planned: list[Planned[P]] = []
    for event in events:
        value = event.message.value
        try:
            with as_current(event):
                plan = await with_retries(
                    functools.partial(stage.plan, value, scope), f"{stage.name}: {_where(event)}"
                )
        except GaveUp as failure:
            await dead_letter(event, stage.name, failure.error, failure.attempts)
            continue
        if plan is not None:
            planned.append(Planned(event, plan))
    if not planned:
        return
    try:
        plans = [p.plan for p in planned]
        await with_retries(functools.partial(stage.apply, plans), f"{stage.name}: a batch")
        return
    except GaveUp as failure:
        log.warning(
            "%s: a batch of %d failed (%r); applying it record by record",
            stage.name,
            len(planned),
            failure.error,
        )
    for one in planned:
        try:
            await with_retries(
                functools.partial(stage.apply, [one.plan]), f"{stage.name}: {_where(one.event)}"
            )
        except GaveUp as failure:
            await dead_letter(one.event, stage.name, failure.error, failure.attempts)


def _where(event: Any) -> str:
    message = event.message
    return f"{message.topic}[{message.partition}]@{message.offset}"
