from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from faust.streams import current_event

from agents.runtime.batches import BatchScope, handle_batch
from core.errors import ValidationFailed
from streams.contract import MESSAGES_INBOUND


@dataclass
class Message:
    value: bytes
    offset: int
    topic: str = MESSAGES_INBOUND
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
