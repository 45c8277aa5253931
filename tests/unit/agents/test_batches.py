from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from faust.streams import current_event

from agents.batches import BatchScope, handle_batch
from agents.continuity import OffsetContinuity
from core.errors import ValidationFailed


@dataclass
class Message:
    value: bytes
    offset: int
    topic: str = "messages.inbound"
    partition: int = 3
    key: bytes = b"c1"


@dataclass
class Event:
    message: Message


@dataclass
class RecordingStage:
    """Plans a record as its text; refuses to plan b"bad" and to write b"unwritable"."""

    name: str = "test"
    transient_failures: int = 0
    applied: list[list[str]] = field(default_factory=list)
    current: list[Any] = field(default_factory=list)

    async def plan(self, raw: bytes, batch: BatchScope) -> str:
        self.current.append(current_event())
        batch.lookups[raw] = True
        if raw == b"bad":
            raise ValidationFailed("bad record")
        return raw.decode()

    async def apply(self, plans: Sequence[str]) -> None:
        if self.transient_failures:
            self.transient_failures -= 1
            raise ConnectionError("database away for a moment")
        if "unwritable" in plans:
            raise ValidationFailed("document too large")
        self.applied.append(list(plans))


@dataclass
class Letters:
    sent: list[tuple[int, str, str, int]] = field(default_factory=list)

    async def __call__(self, event: Any, stage: str, error: BaseException, attempts: int) -> None:
        self.sent.append((event.message.offset, stage, type(error).__name__, attempts))


def _events(*values: bytes) -> list[Event]:
    return [Event(Message(value, offset)) for offset, value in enumerate(values)]


async def test_a_batch_is_planned_in_order_and_applied_once() -> None:
    stage, letters = RecordingStage(), Letters()
    events = _events(b"a", b"b", b"c")
    await handle_batch(events, stage, letters)
    assert stage.applied == [["a", "b", "c"]]
    assert stage.current == events, "each record is Faust's current event while it is planned"
    assert letters.sent == []


async def test_a_record_that_cannot_be_planned_is_dead_lettered_alone() -> None:
    stage, letters = RecordingStage(), Letters()
    await handle_batch(_events(b"a", b"bad", b"c"), stage, letters)
    assert stage.applied == [["a", "c"]]
    assert letters.sent == [(1, "test", "ValidationFailed", 1)]


async def test_a_batch_that_cannot_be_written_is_retried_record_by_record() -> None:
    stage, letters = RecordingStage(), Letters()
    await handle_batch(_events(b"a", b"unwritable", b"c"), stage, letters)
    assert stage.applied == [["a"], ["c"]]
    assert letters.sent == [(1, "test", "ValidationFailed", 1)]


async def test_a_transient_failure_is_retried_and_the_batch_written_once() -> None:
    stage, letters = RecordingStage(transient_failures=1), Letters()
    await handle_batch(_events(b"a", b"b"), stage, letters)
    assert stage.applied == [["a", "b"]]
    assert letters.sent == []


@dataclass
class Partitioned:
    value: bytes
    offset: int
    tp: str = "messages.inbound/0"
    generation_id: int = 1


@dataclass
class FakeConsumer:
    _gap: dict[str, object] = field(default_factory=dict)
    _acked: dict[str, list[int]] = field(default_factory=dict)
    _acked_index: dict[str, set[int]] = field(default_factory=dict)
    seeks: list[tuple[str, int]] = field(default_factory=list)

    async def seek(self, tp: str, offset: int) -> None:
        self.seeks.append((tp, offset))


def _at(*offsets: int, tp: str = "messages.inbound/0", generation: int = 1) -> list[Event]:
    return [Event(Partitioned(b"x", o, tp, generation)) for o in offsets]  # type: ignore[arg-type]


async def test_a_hole_in_a_partition_is_refused_and_rewound() -> None:
    consumer = FakeConsumer(_gap={"messages.inbound/0": "a gap Faust would commit past"})
    continuity = OffsetContinuity("test", consumer)
    assert [e.message.offset for e in await continuity.admit(_at(10, 11))] == [10, 11]
    admitted = await continuity.admit([*_at(15, 16), *_at(3, tp="other/1")])
    assert [e.message.offset for e in admitted] == [3], "nothing after the hole"
    assert consumer.seeks == [("messages.inbound/0", 12)]
    assert consumer._gap == {}
    assert await continuity.admit(_at(17)) == [], "stale records after the hole: no second seek"
    assert consumer.seeks == [("messages.inbound/0", 12)]
    assert [e.message.offset for e in await continuity.admit(_at(12, 13))] == [12, 13]


async def test_faust_acks_of_the_skipped_records_are_taken_back() -> None:
    """Faust acks what it skips: left alone, a commit would pass the hole before the rewind
    brings it back, and a crash then would lose it."""
    tp = "messages.inbound/0"
    consumer = FakeConsumer(_acked={tp: [10, 11, 12, 13]}, _acked_index={tp: {10, 11, 12, 13}})
    continuity = OffsetContinuity("test", consumer)
    await continuity.admit(_at(10, 11))
    assert await continuity.admit(_at(14)) == []  # 12 and 13 were skipped, and acked
    assert consumer._acked == {tp: [10, 11]}
    assert consumer._acked_index == {tp: {10, 11}}


async def test_a_hole_skipped_again_after_the_rewind_is_rewound_again() -> None:
    consumer = FakeConsumer()
    continuity = OffsetContinuity("test", consumer)
    await continuity.admit(_at(10, 11))
    assert await continuity.admit(_at(13, 14)) == []
    assert await continuity.admit(_at(15)) == [], "the old fetch, still arriving"
    assert consumer.seeks == [("messages.inbound/0", 12)]
    # The refetch starts over at 13: 12 was skipped once more, so it is asked for again.
    assert await continuity.admit(_at(13, 14)) == []
    assert consumer.seeks == [("messages.inbound/0", 12)] * 2
    assert [e.message.offset for e in await continuity.admit(_at(12, 13, 14))] == [12, 13, 14]
    assert await continuity.admit(_at(15)) != []
    assert len(consumer.seeks) == 2


async def test_a_new_generation_may_start_anywhere() -> None:
    consumer = FakeConsumer()
    continuity = OffsetContinuity("test", consumer)
    await continuity.admit(_at(10))
    assert len(await continuity.admit(_at(40, generation=2))) == 1
    assert len(await continuity.admit(_at(5, generation=3))) == 1
    assert len(await continuity.admit(_at(5, 6, generation=3))) == 2, "a repeat is harmless"
    assert consumer.seeks == []
