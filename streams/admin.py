"""Create the contract's topics before a worker subscribes to them.

A consumer group that forms while a topic is missing assigns none of its partitions, and the
workers only notice the topic at their next metadata refresh (minutes later). So the worker
creates every topic first, with its partition count. Existing topics keep their partitions;
the topic configuration the contract declares (compaction of table changelogs) is reapplied.
"""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError

from core.settings import Settings
from streams.contract import CHANGELOGS, CONTRACT, TopicSpec


def contract_topics() -> dict[str, TopicSpec]:
    """Every topic of the contract (with its dead-letter twin) and every table changelog."""
    topics = {spec.name: spec for spec in CONTRACT}
    topics |= {
        spec.dead_letter: TopicSpec(spec.dead_letter, f"dead letters of {spec.name}")
        for spec in CONTRACT
    }
    topics |= {spec.name: spec for spec in CHANGELOGS}
    return topics


async def create_topics(settings: Settings) -> list[str]:
    """Create the missing contract topics; returns the names it created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = contract_topics()
        missing = {name: spec for name, spec in wanted.items() if name not in existing}
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(
                        name,
                        num_partitions=spec.partitions,
                        replication_factor=1,
                        topic_configs=dict(spec.configs),
                    )
                    for name, spec in missing.items()
                ]
            )
            for topic, code, *message in response.topic_errors:
                # "already exists": another worker created it at the same moment.
                if code not in (0, TopicAlreadyExistsError.errno):
                    raise RuntimeError(f"cannot create topic {topic}: error {code} {message}")
        configured = [
            ConfigResource(ConfigResourceType.TOPIC, name, configs=dict(spec.configs))
            for name, spec in wanted.items()
            if spec.configs and name not in missing
        ]
        if configured:
            for response in await admin.alter_configs(configured):
                for code, message, _, topic in response.resources:
                    if code != 0:
                        raise RuntimeError(f"cannot configure topic {topic}: {code} {message}")
        return sorted(missing)
    finally:
        await admin.close()
