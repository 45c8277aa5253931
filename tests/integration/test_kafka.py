"""Kafka speaks its real protocol: a produce→consume round trip through the project's producer."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from core.clients.kafka import cluster_reachable, new_producer
from core.settings import Settings


@pytest.fixture
async def topic(settings: Settings) -> AsyncIterator[str]:
    name = f"test.roundtrip.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=3, replication_factor=1)])
        yield name
        await admin.delete_topics([name])
    finally:
        await admin.close()


async def test_cluster_is_reachable(settings: Settings) -> None:
    await cluster_reachable(settings, timeout=5)


async def test_produce_then_consume_keeps_order_per_key(settings: Settings, topic: str) -> None:
    producer = new_producer(settings)
    await producer.start()
    try:
        for index in range(20):
            key = f"conversation-{index % 4}".encode()
            await producer.send_and_wait(topic, key=key, value=f"{index}".encode())
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=f"test-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    received: dict[bytes, list[int]] = {}
    try:
        while sum(len(values) for values in received.values()) < 20:
            batch = await consumer.getmany(timeout_ms=5000)
            assert batch, "no records arrived within 5s"
            for records in batch.values():
                for record in records:
                    received.setdefault(record.key, []).append(int(record.value))
    finally:
        await consumer.stop()

    assert received == {
        f"conversation-{k}".encode(): [i for i in range(20) if i % 4 == k] for k in range(4)
    }
