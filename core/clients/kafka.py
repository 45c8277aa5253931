"""Kafka clients for the edges (web services); the pipeline itself talks to Kafka through Faust."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer
from aiokafka.client import AIOKafkaClient
from aiokafka.structs import TopicPartition

from core.settings import Settings


def new_producer(settings: Settings) -> AIOKafkaProducer:
    """An idempotent producer that waits for the broker's ack, so an acked send is never lost."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        acks="all",
        enable_idempotence=True,
        request_timeout_ms=10_000,
    )


async def cluster_reachable(settings: Settings, *, timeout: float) -> None:  # noqa: ASYNC109
    """Fetch cluster metadata; raise if it does not answer in time.

    ``timeout`` is also the client's request timeout, so it cannot be left to the caller.
    """
    client = AIOKafkaClient(
        bootstrap_servers=settings.kafka_bootstrap,
        request_timeout_ms=int(timeout * 1000),
    )
    try:
        await asyncio.wait_for(client.bootstrap(), timeout=timeout)
        if not client.cluster.brokers():
            raise ConnectionError("Kafka answered with no brokers")
    finally:
        await client.close()


async def partitions_online(settings: Settings, *, timeout: float) -> None:  # noqa: ASYNC109
    """Raise unless every partition of every topic has a leader.

    Right after a broker restarts, its partitions come back online one by one; a Faust worker
    that starts in that window can crash recovering its tables (it seeks to a negative offset).
    """
    client = AIOKafkaClient(
        bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=int(timeout * 1000)
    )
    try:
        await asyncio.wait_for(client.bootstrap(), timeout=timeout)
        metadata = await asyncio.wait_for(client.fetch_all_metadata(), timeout=timeout)
        for topic in metadata.topics():
            for partition in metadata.partitions_for_topic(topic) or ():
                leader = metadata.leader_for_partition(TopicPartition(topic, partition))
                if leader is None or leader < 0:
                    raise ConnectionError(f"{topic}[{partition}] has no leader yet")
    finally:
        await client.close()
