"""Acks of the records a Faust stream skips are refused; an agent's own acks never are."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from faust.transport.consumer import Consumer

from streams.faust_fixes import skips


class FlowControl:
    def __init__(self) -> None:
        self.active = True

    def is_active(self) -> bool:
        return self.active


class FakeConsumer:
    """What the patched ``ack`` reads of Faust's consumer; the original it calls records."""

    def __init__(self) -> None:
        self.app = SimpleNamespace(flow_control=FlowControl(), consumer_generation_id=4)
        self.acked: list[int] = []

    def original(self, message: Any) -> bool:
        self.acked.append(message.offset)
        return True


class Stream:
    """A ``stream.noack()``: its ``ack`` acks the event's message on the consumer."""

    def __init__(self, consumer: FakeConsumer) -> None:
        self.consumer = consumer

    async def ack(self, event: Any) -> bool:
        return bool(Consumer.ack(self.consumer, event.message))  # type: ignore[arg-type]


def _message(offset: int, generation: int = 4) -> Any:
    return SimpleNamespace(offset=offset, generation_id=generation)


@pytest.fixture
def consumer(monkeypatch: pytest.MonkeyPatch) -> FakeConsumer:
    monkeypatch.setattr(Consumer, "ack", FakeConsumer.original)
    monkeypatch.setattr(Consumer, skips._INSTALLED, False, raising=False)
    skips.install()
    skips.install()
    return FakeConsumer()


def test_a_record_of_the_current_generation_is_acked(consumer: FakeConsumer) -> None:
    assert Consumer.ack(consumer, _message(1))  # type: ignore[arg-type]
    assert consumer.acked == [1]


def test_a_skipped_record_is_not_acked(consumer: FakeConsumer) -> None:
    assert not Consumer.ack(consumer, _message(1, generation=3))  # type: ignore[arg-type]
    consumer.app.flow_control.active = False  # a rebalance has begun
    assert not Consumer.ack(consumer, _message(2))  # type: ignore[arg-type]
    assert consumer.acked == []


async def test_an_agents_own_ack_goes_through_a_rebalance(consumer: FakeConsumer) -> None:
    consumer.app.flow_control.active = False
    stream = Stream(consumer)
    assert await skips.ack(stream, SimpleNamespace(message=_message(1, generation=3)))
    assert consumer.acked == [1]
    assert not Consumer.ack(consumer, _message(2)), "only for the ack it wraps"  # type: ignore[arg-type]
