"""Records taken a batch at a time, so that the writes of many records share their round trips.

One record at a time, a stage waits for each of its MongoDB writes and Kafka acks in turn: a
few milliseconds per record, whatever the load. Here a stage takes what its stream holds (up
to ``BATCH_MAX`` records, or whatever arrived within ``BATCH_WITHIN_S``), *plans* each record in
order — decodes and checks it, applies it to the conversation table in memory, and says what it
will write — and then *applies* the plans together: one ``insert_many`` per collection, and
every produce handed to the producer before any ack is awaited.

Faust acks the batch's records only after the batch is applied, so a crash repeats it; every
write is idempotent by id, which makes the repeat harmless. A record that fails its plan is
dead-lettered on its own. A batch whose writes fail for good is applied again one record at a
time, so that only a record that fails alone is dead-lettered.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import weakref
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from faust.streams import _current_event

from agents.failures import GaveUp, dead_letter, with_retries
from streams.records import PipelineRecord, encode

log = logging.getLogger(__name__)

#: The most records one batch takes.
BATCH_MAX = 500
#: How long a batch waits for more records: the latency a record pays at a low rate.
BATCH_WITHIN_S = 0.003

P = TypeVar("P")


@dataclass(frozen=True)
class Send:
    """One record to produce: the topic (a Faust topic), its key, and the record."""

    topic: Any
    key: str
    record: PipelineRecord


async def publish_all(sends: Sequence[Send]) -> None:
    """Produce every record, in order, then wait until the broker has acked them all.

    The producer keeps each partition's records in the order they were handed to it, so a
    conversation's records keep their order; the input is committed only after the acks.
    """
    pending: list[Awaitable[Any]] = []
    for send in sends:
        # Straight to the app's producer: Faust's Topic.send adds bookkeeping that cost a third
        # of a worker's time here, and none of it is used (the ack is awaited below).
        producer = send.topic.app.producer
        pending.append(
            await producer.send(
                send.topic.get_topic_name(),
                send.key.encode(),
                encode(send.record),
                None,
                None,
                None,
            )
        )
    await asyncio.gather(*pending)


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


@contextlib.contextmanager
def as_current(event: Any) -> Iterator[None]:
    """Make ``event`` Faust's current event: a table writes its changelog to that partition."""
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


async def run_batches(stream: Any, stage: BatchStage[P]) -> None:
    """The body of a batching agent: take, plan, apply, until the stream stops."""
    continuity = OffsetContinuity(stage.name)
    async for events in stream.take_events(BATCH_MAX, BATCH_WITHIN_S):
        continuity.check(events)
        await handle_batch(events, stage)


class OffsetContinuity:
    """Notices a partition's offsets jumping within one consumer generation.

    The contract's topics are neither compacted nor transactional, so one partition's offsets
    arrive without holes while the worker keeps the partition: a hole means the consumer
    skipped records, which would then be committed unprocessed. Logged loudly.
    """

    def __init__(self, stage: str) -> None:
        self._stage = stage
        self._last: dict[Any, tuple[Any, int]] = {}

    def check(self, events: Sequence[Any]) -> None:
        for event in events:
            message = event.message
            generation = getattr(message, "generation_id", None)
            last = self._last.get(message.tp)
            if last is not None and last[0] == generation and message.offset > last[1] + 1:
                log.error(
                    "%s: %s jumped from offset %d to %d in generation %s",
                    self._stage,
                    message.tp,
                    last[1],
                    message.offset,
                    generation,
                )
            self._last[message.tp] = (generation, message.offset)


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
