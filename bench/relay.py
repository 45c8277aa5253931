"""A raw aiokafka relay chain: the baseline the pipeline benchmark compares itself with.

``python -m bench.relay SOURCE:TARGET [SOURCE:TARGET ...]`` forwards every record from each
source topic to its target with the same key, a fetched batch at a time, committing after the
broker has acked the batch's produces: the same hops, the same batching and the same delivery
guarantee as the pipeline, with no processing and no database.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import uuid
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from core.settings import Settings


async def forward(
    producer: AIOKafkaProducer,
    target: str,
    batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
    transform: Callable[[bytes], bytes],
) -> None:
    """Produce every fetched record to ``target``, then wait for all the acks at once."""
    pending = [
        await producer.send(target, key=record.key, value=transform(record.value or b""))
        for records in batch.values()
        for record in records
    ]
    await asyncio.gather(*pending)


async def relay(settings: Settings, source: str, target: str, stop: asyncio.Event) -> None:
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=f"bench-relay-{source}-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="latest",
        enable_auto_commit=False,
    )
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await consumer.start()
    await producer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200)
            if batch:
                await forward(producer, target, batch, lambda value: value)
                await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()


async def main(pairs: list[str]) -> None:
    settings = Settings()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    routes = [pair.split(":", 1) for pair in pairs]
    tasks = [asyncio.create_task(relay(settings, src, dst, stop)) for src, dst in routes]
    print("relay ready", flush=True)
    await asyncio.gather(*tasks)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
