"""A web service's Kafka producer, started on first use so the service starts while Kafka is down.

Sends wait for the broker's ack (``acks="all"``, idempotent: ``core.clients.kafka.new_producer``); a
send that Kafka does not take in time is a ``DependencyUnavailable`` (503), and the client may
retry it: records carry deterministic ids, so a retried send that did land is applied once.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from core.clients.kafka import new_producer
from core.errors import DependencyUnavailable
from core.settings import Settings

log = logging.getLogger(__name__)

#: How long one send may wait for the broker's ack before the request answers 503.
SEND_TIMEOUT_S = 15.0


class LazyProducer:
    def __init__(self, settings: Settings, *, send_timeout_s: float = SEND_TIMEOUT_S) -> None:
        self._settings = settings
        self._send_timeout_s = send_timeout_s
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def ready(self) -> AIOKafkaProducer:
        """The started producer; DependencyUnavailable when Kafka cannot be reached now."""
        if self._producer is not None:
            return self._producer
        async with self._lock:
            if self._producer is None:
                producer = new_producer(self._settings)
                try:
                    await asyncio.wait_for(producer.start(), timeout=self._send_timeout_s)
                except (KafkaError, OSError, TimeoutError) as error:
                    await producer.stop()
                    raise DependencyUnavailable("Kafka is not reachable: nothing was sent") from (
                        error
                    )
                self._producer = producer
            return self._producer

    async def start(self) -> None:
        """Start now if Kafka answers; otherwise the first send tries again."""
        try:
            await self.ready()
        except DependencyUnavailable:
            log.warning("Kafka is not reachable at start-up; the first send will try again")

    async def send(self, topic: str, key: str, value: bytes) -> None:
        """Produce one record and wait for the broker's ack."""
        producer = await self.ready()
        try:
            await asyncio.wait_for(
                producer.send_and_wait(topic, key=key.encode(), value=value),
                timeout=self._send_timeout_s,
            )
        except (KafkaError, TimeoutError) as error:
            raise DependencyUnavailable(f"Kafka did not take the record on {topic}") from error

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
