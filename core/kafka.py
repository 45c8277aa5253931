"""Kafka clients for the edges (web services); the pipeline itself talks to Kafka through Faust."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]
from aiokafka.client import AIOKafkaClient  # type: ignore[import-untyped]

from core.settings import Settings


def new_producer(settings: Settings) -> AIOKafkaProducer:
    """An idempotent producer that waits for the broker's ack, so an acked send is never lost."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        acks="all",
        enable_idempotence=True,
        request_timeout_ms=10_000,
    )


async def cluster_reachable(settings: Settings, *, timeout: float) -> None:
    """Fetch cluster metadata from the broker; raise if it does not answer in time."""
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
