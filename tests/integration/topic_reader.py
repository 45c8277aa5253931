"""Reading what a test made a service produce: a topic's end offsets now, then the records
written since, as stored (the tests filter and decode them)."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord, TopicPartition

from core.settings import Settings


async def end_offsets(settings: Settings, topic: str) -> dict[TopicPartition, int]:
    """Where every partition of ``topic`` ends now."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        assert partitions, f"{topic} has no partitions"
        return dict(await consumer.end_offsets([TopicPartition(topic, p) for p in partitions]))
    finally:
        await consumer.stop()


async def records_since(
    settings: Settings, offsets: dict[TopicPartition, int]
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record from ``offsets`` to where the partitions end now."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        for partition, offset in offsets.items():
            consumer.seek(partition, offset)
        ends = await consumer.end_offsets(list(offsets))
        found: list[ConsumerRecord[bytes, bytes]] = []
        while [p for p in offsets if await consumer.position(p) < ends[p]]:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                found += records
        return found
    finally:
        await consumer.stop()
