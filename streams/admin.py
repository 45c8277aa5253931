"""Create the contract's topics before a worker subscribes to them.

A consumer group that forms while a topic is missing assigns none of its partitions, and the
workers only notice the topic at their next metadata refresh (minutes later). So the worker
creates every topic first, with its partition count; existing topics are left as they are.
"""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from core.settings import Settings
from streams.topics import CONTRACT


def contract_topics() -> dict[str, int]:
    """Every topic of the contract, with its dead-letter twin, and its partition count."""
    topics = {spec.name: spec.partitions for spec in CONTRACT}
    topics |= {spec.dead_letter: spec.partitions for spec in CONTRACT}
    return topics


async def create_topics(settings: Settings) -> list[str]:
    """Create the missing contract topics; returns the names it created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = {name: n for name, n in contract_topics().items() if name not in existing}
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(name, num_partitions=n, replication_factor=1)
                    for name, n in missing.items()
                ]
            )
            for topic, code, *message in response.topic_errors:
                # "already exists": another worker created it at the same moment.
                if code not in (0, TopicAlreadyExistsError.errno):
                    raise RuntimeError(f"cannot create topic {topic}: error {code} {message}")
        return sorted(missing)
    finally:
        await admin.close()
