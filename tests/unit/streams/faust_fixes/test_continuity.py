"""The offset guard: on Faust's own consumer (what it edits decides what Faust commits), and
its bookkeeping on a recording consumer."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import pytest
from faust.events import Event as FaustEvent
from faust.types import TP as FaustTP

from streams.faust_fixes import read_offsets
from streams.faust_fixes.continuity import RESEEK_AFTER_S, OffsetContinuity
from streams.faust_fixes.read_offsets import ReadOffsets
from tests.unit.streams.faust_fixes.harness import FaustHarness, messages

TP = "messages.inbound/0"
OUTBOUND = FaustTP("test.outbound", 2)


def _commit(consumer: Any, tp: FaustTP) -> int | None:
    """What Faust's next commit of ``tp`` would write (``Consumer._new_offset``), recorded as
    committed the way a successful commit records it."""
    offset: int | None = consumer._new_offset(tp)
    if offset is not None:
        consumer._committed_offset[tp] = offset
    return offset


async def test_faust_commits_no_further_than_the_hole(harness: FaustHarness) -> None:
    read_offsets.install()
    await harness.acking(OUTBOUND.topic)
    skipped_by_the_stream = {12, 13}  # once each, acked as Faust's pure-Python stream acks them
    admitted: list[int] = []

    async def stream_and_agent(message: Any) -> None:
        event = FaustEvent(harness.app, message.key, message.value, message.headers, message)
        if message.offset in skipped_by_the_stream:
            skipped_by_the_stream.discard(message.offset)
            event.ack()
            return
        for done in await guard.admit([event]):
            admitted.append(done.message.offset)
            event.ack()  # the agent's ack, once its writes are done

    consumer = harness.consumer(stream_and_agent)
    harness.app.consumer = consumer
    guard = OffsetContinuity("test", consumer)
    # 14 and 15 never came: Faust marks 14-16 as a gap, which its commit counts as acked.
    await harness.drain(consumer, [messages(OUTBOUND, 10, 11, 12, 13, 16)])
    assert admitted == [10, 11]
    assert harness.kafka.seeks == [(OUTBOUND, 12)]
    assert _commit(consumer, OUTBOUND) == 12, "not past 12 and 13, which Faust acked unprocessed"
    await harness.drain(consumer, [messages(OUTBOUND, 12, 13, 14, 15)])  # the refetch, in part
    assert admitted == [10, 11, 12, 13, 14, 15]
    # Faust's old gap, had it stayed, would have counted 16 as done as well.
    assert [_commit(consumer, OUTBOUND), _commit(consumer, OUTBOUND)] == [16, None]


@dataclass
class Partitioned:
    value: bytes
    offset: int
    tp: str = TP
    generation_id: int = 1


@dataclass
class Event:
    message: Partitioned


@dataclass
class FakeConsumer:
    """What the guard touches of Faust's consumer; ``seek_wait`` records, like Faust's, the
    offset sought as the partition's read offset."""

    _gap: dict[str, object] = field(default_factory=dict)
    _acked: dict[str, list[int]] = field(default_factory=dict)
    _acked_index: dict[str, set[int]] = field(default_factory=dict)
    _read_offset: ReadOffsets = field(default_factory=ReadOffsets)
    seeks: list[tuple[str, int]] = field(default_factory=list)
    refuse_seeks: bool = False

    async def seek_wait(self, partitions: dict[str, int]) -> None:
        for tp, offset in partitions.items():
            if self.refuse_seeks:
                raise RuntimeError(f"No current assignment for partition {tp}")
            self.seeks.append((tp, offset))
            self._read_offset[tp] = offset


@dataclass
class Clock:
    now: float = 100.0

    def __call__(self) -> float:
        return self.now


def _at(*offsets: int, tp: str = TP, generation: int = 1) -> list[Event]:
    return [Event(Partitioned(b"x", o, tp, generation)) for o in offsets]


def _offsets(events: list[Any]) -> list[int]:
    return [e.message.offset for e in events]


async def test_a_hole_in_a_partition_is_refused_and_rewound() -> None:
    consumer = FakeConsumer(_gap={TP: "a gap Faust would commit past"})
    continuity = OffsetContinuity("test", consumer)
    assert _offsets(await continuity.admit(_at(10, 11))) == [10, 11]
    admitted = await continuity.admit([*_at(15, 16), *_at(3, tp="other/1")])
    assert _offsets(admitted) == [3], "nothing after the hole"
    assert consumer.seeks == [(TP, 12)]
    assert consumer._gap == {}
    assert await continuity.admit(_at(17)) == [], "stale records after the hole: no second seek"
    assert consumer.seeks == [(TP, 12)]
    assert _offsets(await continuity.admit(_at(12, 13))) == [12, 13]


async def test_the_read_offset_is_held_open_until_the_hole_comes_back() -> None:
    consumer = FakeConsumer()
    continuity = OffsetContinuity("test", consumer)
    await continuity.admit(_at(10, 11))
    await continuity.admit(_at(15))
    # Faust's fetch loop moves the read offset past the hole with each stale record it hands
    # over after the seek; held, it still reads as unknown, so the refetched hole is not dropped.
    consumer._read_offset[TP] = 40
    assert consumer._read_offset[TP] is None
    assert _offsets(await continuity.admit(_at(12))) == [12]
    consumer._read_offset[TP] = 12
    assert consumer._read_offset[TP] == 12, "released once the hole is admitted"


async def test_faust_acks_of_the_skipped_records_are_taken_back() -> None:
    # Faust's stream acks a record it skips; those acks must not be committed, or a worker that
    # dies before the rewind brings the records back loses them.
    consumer = FakeConsumer(_acked={TP: [10, 11, 12, 13]}, _acked_index={TP: {10, 11, 12, 13}})
    continuity = OffsetContinuity("test", consumer)
    await continuity.admit(_at(10, 11))
    assert await continuity.admit(_at(14)) == []  # 12 and 13 were skipped, and acked
    assert consumer._acked == {TP: [10, 11]}
    assert consumer._acked_index == {TP: {10, 11}}


async def test_a_hole_skipped_again_after_the_rewind_is_rewound_again() -> None:
    consumer = FakeConsumer()
    continuity = OffsetContinuity("test", consumer)
    await continuity.admit(_at(10, 11))
    assert await continuity.admit(_at(13, 14)) == []
    assert await continuity.admit(_at(15)) == [], "the old fetch, still arriving"
    assert consumer.seeks == [(TP, 12)]
    # The refetch starts over at 13: 12 was skipped once more, so it is asked for again.
    assert await continuity.admit(_at(13, 14)) == []
    assert consumer.seeks == [(TP, 12)] * 2
    assert _offsets(await continuity.admit(_at(12, 13, 14))) == [12, 13, 14]
    assert await continuity.admit(_at(15)) != []
    assert len(consumer.seeks) == 2


async def test_a_seek_that_comes_to_nothing_is_repeated() -> None:
    clock = Clock()
    consumer = FakeConsumer()
    continuity = OffsetContinuity("test", consumer, clock=clock)
    await continuity.admit(_at(10, 11))
    await continuity.admit(_at(13))
    clock.now += RESEEK_AFTER_S / 2
    assert await continuity.admit(_at(14, 15)) == [], "still the fetch from before the seek"
    assert consumer.seeks == [(TP, 12)]
    clock.now += RESEEK_AFTER_S
    assert await continuity.admit(_at(16)) == []
    assert consumer.seeks == [(TP, 12)] * 2
    clock.now += 1
    assert await continuity.admit(_at(17)) == [], "not again until another wait"
    assert len(consumer.seeks) == 2
    assert _offsets(await continuity.admit(_at(12, 13))) == [12, 13]


async def test_a_failed_seek_is_logged_and_repeated_later(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    consumer = FakeConsumer(refuse_seeks=True)
    continuity = OffsetContinuity("test", consumer, clock=clock)
    await continuity.admit(_at(10))
    with caplog.at_level(logging.WARNING, logger="streams.faust_fixes.continuity"):
        assert await continuity.admit(_at(12)) == []
    assert "seeking messages.inbound/0 back to 11 failed" in caplog.text
    consumer.refuse_seeks = False
    clock.now += RESEEK_AFTER_S
    assert await continuity.admit(_at(13)) == []
    assert consumer.seeks == [(TP, 11)]


async def test_a_new_generation_may_start_anywhere() -> None:
    consumer = FakeConsumer()
    continuity = OffsetContinuity("test", consumer)
    await continuity.admit(_at(10))
    assert len(await continuity.admit(_at(40, generation=2))) == 1
    assert len(await continuity.admit(_at(5, generation=3))) == 1
    assert len(await continuity.admit(_at(5, 6, generation=3))) == 2, "a repeat is harmless"
    assert consumer.seeks == []


async def test_a_consumer_without_held_read_offsets_is_refused() -> None:
    consumer = FakeConsumer()
    consumer._read_offset = {}  # type: ignore[assignment]
    continuity = OffsetContinuity("test", consumer)
    await continuity.admit(_at(10))
    with pytest.raises(RuntimeError, match="read_offsets"):
        await continuity.admit(_at(12))
