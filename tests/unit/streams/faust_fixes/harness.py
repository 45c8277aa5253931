"""Faust's own objects, driven without a broker: a real app, its real consumer and fetch loop.

Only what lies below Faust is stood in for: the records a fetch returns (``Consumer.getmany``,
aiokafka's part) and the Kafka client that Faust's consumer thread seeks with. Everything the
fixes patch or read (``Consumer.__init__``, ``_drain_messages``, ``wait_first``, ``ack``,
``seek_wait``, ``_new_offset``, streams, tables, the producer buffer) is Faust's code.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.transport.consumer import Fetcher
from faust.types import TP
from faust.types.tuples import ConsumerMessage

Callback = Callable[[Any], Awaitable[None]]


async def _ignore(message: Any) -> None:
    """A consumer callback for consumers whose records nobody reads."""


@dataclass
class KafkaClient:
    """aiokafka's consumer as Faust's consumer thread uses it to seek."""

    seeks: list[tuple[TP, int]] = field(default_factory=list)

    def seek(self, tp: TP, offset: int) -> None:
        self.seeks.append((tp, offset))

    async def position(self, tp: TP) -> int:
        return next(offset for sought, offset in reversed(self.seeks) if sought == tp)


class FaustHarness:
    """A real ``faust.App`` (aiokafka driver, never started) and consumers created from it."""

    def __init__(self) -> None:
        self.app = faust.App(
            f"test-faust-fixes-{uuid.uuid4().hex[:8]}",
            broker="kafka://127.0.0.1:9092",
            store="memory://",
            web_enabled=False,
        )
        self.kafka = KafkaClient()
        self._consumers: list[Any] = []

    def consumer(self, callback: Callback = _ignore) -> Any:
        """Faust's aiokafka consumer, as the app creates it; its seeks reach ``self.kafka``
        through Faust's own ``seek_wait``, run here rather than in the consumer's thread."""
        consumer: Any = self.app.transport.create_consumer(
            callback=callback,
            on_partitions_revoked=self._on_partitions_changed,
            on_partitions_assigned=self._on_partitions_changed,
        )
        thread = consumer._thread

        async def in_this_loop(method: Callable[..., Awaitable[Any]], *args: Any) -> Any:
            return await method(*args)

        thread.call_thread = in_this_loop
        thread._ensure_consumer = lambda: self.kafka
        self._consumers.append(consumer)
        return consumer

    async def acking(self, topic: str) -> None:
        """Declare ``topic`` as one whose records are acked: Faust tracks acks and gaps only
        for those."""
        topics: Any = self.app.topics
        topics.add(self.app.topic(topic))
        await topics._update_indices()

    async def _on_partitions_changed(self, partitions: set[TP]) -> None:
        """The app's part of a rebalance, which the fixes do not touch."""

    async def drain(self, consumer: Any, fetches: Iterable[Iterable[ConsumerMessage]]) -> None:
        """Run Faust's fetch loop (``Consumer._drain_messages``) over ``fetches``, one
        ``getmany`` each, until they are all handed over."""
        fetcher = Fetcher(self.app)
        batches = iter(fetches)

        async def getmany(timeout: float) -> AsyncIterator[tuple[TP, ConsumerMessage]]:  # noqa: ASYNC109 (Faust's)
            batch = next(batches, None)
            if batch is None:
                fetcher._stopped.set()
                return
            for message in batch:
                yield message.tp, message

        consumer.getmany = getmany
        await consumer._drain_messages(fetcher)

    def close(self) -> None:
        """Close the event loops Faust made for its consumer threads (never started)."""
        consumers = [*self._consumers]
        if self.app._consumer is not None and self.app._consumer not in consumers:
            consumers.append(self.app._consumer)
        for consumer in consumers:
            consumer._thread.thread_loop.close()


def messages(tp: TP, *offsets: int, generation: int = 0) -> list[ConsumerMessage]:
    """Records of ``tp`` as Faust's aiokafka driver makes them."""
    return [
        ConsumerMessage(
            tp.topic,
            tp.partition,
            offset,
            0.0,
            0,
            [],
            b"key",
            b"value",
            None,
            tp=tp,
            generation_id=generation,
        )
        for offset in offsets
    ]
