"""The changelog buffer's drain, on Faust's own ProducerBuffer running its background task."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from faust.transport.producer import ProducerBuffer
from faust.types.tuples import FutureMessage, PendingMessage

from streams.faust_fixes import changelog
from tests.unit.streams.faust_fixes.harness import FaustHarness


@dataclass
class Changelog:
    """A table's changelog topic as the buffer reaches it: ``publish_message`` takes a turn of
    the event loop, like Faust's, and records what it was given."""

    sent: list[Any] = field(default_factory=list)

    async def publish_message(self, fut: FutureMessage, wait: bool = False) -> None:
        await asyncio.sleep(0)
        self.sent.append(fut.message.value)


def _record(channel: Changelog, value: int) -> FutureMessage:
    topic: Any = channel
    message = PendingMessage(topic, b"key", value, 0, None, None, None, None, None)
    return FutureMessage(message)


@pytest.fixture
async def buffer(harness: FaustHarness) -> AsyncIterator[Any]:
    """The app's producer buffer, with its background task running, once the drain is in."""
    changelog.install()
    changelog.install()  # idempotent
    buffer = harness.app.producer.buffer
    await buffer.start()
    yield buffer
    await buffer.stop()


async def test_one_wake_up_sends_all_queued(buffer: Any) -> None:
    topic = Changelog()
    for value in range(150):  # more than Faust's 100, past which it holds intake back
        buffer.put(_record(topic, value))
    await asyncio.wait_for(buffer.message_sent.wait(), timeout=5)
    # Faust's own task signals after each record: 149 would still be queued here.
    assert buffer.size == 0
    assert topic.sent == list(range(150))


async def test_a_later_record_goes_on_the_next_wake_up(buffer: Any) -> None:
    topic = Changelog()
    buffer.put(_record(topic, 1))
    await asyncio.wait_for(buffer.message_sent.wait(), timeout=5)
    buffer.message_sent.clear()
    buffer.put(_record(topic, 2))
    await asyncio.wait_for(buffer.message_sent.wait(), timeout=5)
    assert topic.sent == [1, 2]


def test_the_drain_replaces_faust_s_background_task(harness: FaustHarness) -> None:
    changelog.install()
    task = ProducerBuffer.__dict__["_handle_pending"]
    assert task.fun.__wrapped__.__qualname__ == "ProducerBuffer._handle_pending"
    buffer: Any = harness.app.producer.buffer
    assert task in list(buffer._get_tasks())
