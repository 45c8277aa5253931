"""Held read offsets, against Faust's own fetch loop (``Consumer._drain_messages``) and seek."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from faust.events import Event
from faust.types import TP

from streams.faust_fixes import read_offsets
from streams.faust_fixes.continuity import OffsetContinuity
from streams.faust_fixes.read_offsets import ReadOffsets
from tests.unit.streams.faust_fixes.harness import FaustHarness, messages

TP1 = TP("test.outbound", 1)

# Fetched before the seek: 12-14 went missing, the guard sees 15 and seeks back to 12, while
# 16 and 17 are still being handed over. The next fetch starts again at 12.
FETCHES = [messages(TP1, 10, 11, 15, 16, 17), messages(TP1, *range(12, 19))]


async def test_faust_alone_drops_the_records_a_rewind_fetches_again(harness: FaustHarness) -> None:
    handed: list[int] = []

    async def seek_back_at_the_hole(message: Any) -> None:
        handed.append(message.offset)
        if message.offset == 15:
            await consumer.seek_wait({TP1: 12})

    consumer = harness.consumer(seek_back_at_the_hole)
    consumer._read_offset = defaultdict(lambda: None)  # Faust's own, whatever is installed
    await harness.drain(consumer, FETCHES)
    # The bug read_offsets works around: 12-16, fetched again, are dropped as already read.
    assert handed == [10, 11, 15, 16, 17, 17, 18]
    assert harness.kafka.seeks == [(TP1, 12)]


async def test_a_rewind_gets_every_record_fetched_again(harness: FaustHarness) -> None:
    read_offsets.install()
    read_offsets.install()  # idempotent
    handed: list[int] = []
    admitted: list[int] = []

    async def guarded(message: Any) -> None:
        handed.append(message.offset)
        event = Event(harness.app, message.key, message.value, message.headers, message)
        admitted.extend(e.message.offset for e in await guard.admit([event]))

    consumer = harness.consumer(guarded)
    guard = OffsetContinuity("test", consumer)
    await harness.drain(consumer, FETCHES)
    assert harness.kafka.seeks == [(TP1, 12)], "the guard sought back once, through Faust"
    assert handed == [10, 11, 15, 16, 17, *range(12, 19)], "Faust dropped nothing"
    assert admitted == list(range(10, 19))
    assert not consumer._read_offset.held(TP1), "released once the hole came back"
    assert consumer._read_offset[TP1] == 18


async def test_a_revoked_partition_is_no_longer_held(harness: FaustHarness) -> None:
    read_offsets.install()
    consumer = harness.consumer()
    consumer._read_offset[TP1] = 7
    consumer._read_offset.hold(TP1)
    await consumer.on_partitions_revoked({TP1})  # Faust pops the partition's read offset
    assert not consumer._read_offset.held(TP1)
    assert consumer._read_offset[TP1] is None


def test_holding_reads_as_unknown_until_released() -> None:
    offsets = ReadOffsets()
    offsets[TP1] = 7
    offsets.hold(TP1)
    assert offsets[TP1] is None
    assert offsets.get(TP1) == 7
    offsets.release(TP1)
    assert offsets[TP1] == 7
    offsets.hold(TP1)
    assert offsets.pop(TP1) == 7
    assert not offsets.held(TP1)
    assert offsets[TP("other", 0)] is None
