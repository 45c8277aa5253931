"""Every Kafka topic of the pipeline, declared once.

Every record is keyed by its conversation id, so all of one conversation's records land in one
partition, in order. The partition count is part of the contract: changing it moves keys between
partitions. Each consumed topic has a dead-letter twin, ``<topic>.dlq``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import faust

from streams.app import app

PARTITIONS = 8


@dataclass(frozen=True)
class TopicSpec:
    name: str
    purpose: str
    partitions: int = PARTITIONS
    #: Topic-level Kafka configuration, applied when the topic is created and kept in force.
    configs: Mapping[str, str] = field(default_factory=dict)

    @property
    def dead_letter(self) -> str:
        return f"{self.name}.dlq"


CONTRACT: tuple[TopicSpec, ...] = (
    TopicSpec("messages.inbound", "normalized messages from every channel, for message-process"),
    TopicSpec("agent.requests", "turns the AI agent must answer (bot-mode conversations only)"),
    TopicSpec("function.calls", "tool calls requested by the model"),
    TopicSpec("function.results", "tool results, back to the AI agent"),
    TopicSpec("messages.outbound", "bot and operator messages, for the delivery agent"),
    TopicSpec("platform.outbound", "sends to messaging platforms, for the platform sender"),
    TopicSpec("conversation.commands", "operator takeover, release, close, assign and reply"),
    TopicSpec("conversation.events", "status changes, new messages and failures, for operators"),
)


#: Table changelogs keep the latest state of each key. Compaction only cleans closed segments,
#: and a default segment is 1 GiB, so without small segments a worker would replay every state
#: ever written each time it starts (240 MB after a day of tests here).
COMPACTED = {
    "cleanup.policy": "compact",
    "segment.bytes": str(8 * 1024 * 1024),
    "segment.ms": str(10 * 60 * 1000),
    "min.cleanable.dirty.ratio": "0.2",
}

CHANGELOGS: tuple[TopicSpec, ...] = (
    TopicSpec(
        "switchboard-conversation-state-changelog",
        "the conversation-state table (tables.conversations), written by message-process",
        configs=COMPACTED,
    ),
)


def _declare(*names: str, partitions: int = PARTITIONS) -> faust.TopicT:
    # Values stay raw bytes: agents decode them (streams.records.decode), so a record that does
    # not parse reaches the stage's error handling and its dead-letter topic instead of being
    # dropped by the consumer. internal=True: Faust creates the topic before subscribing.
    return app.topic(
        *names, key_type=str, value_serializer="raw", partitions=partitions, internal=True
    )


TOPICS: dict[str, faust.TopicT] = {
    spec.name: _declare(spec.name, partitions=spec.partitions) for spec in CONTRACT
}
DEAD_LETTERS: dict[str, faust.TopicT] = {
    spec.dead_letter: _declare(spec.dead_letter, partitions=spec.partitions) for spec in CONTRACT
}

messages_inbound = TOPICS["messages.inbound"]
agent_requests = TOPICS["agent.requests"]
function_calls = TOPICS["function.calls"]
function_results = TOPICS["function.results"]
messages_outbound = TOPICS["messages.outbound"]
platform_outbound = TOPICS["platform.outbound"]
conversation_commands = TOPICS["conversation.commands"]
conversation_events = TOPICS["conversation.events"]

#: What the message-process agent consumes: users' messages and operators' commands, both keyed
#: by conversation id and co-partitioned, so one agent applies them in order to one table.
message_process_source = _declare("messages.inbound", "conversation.commands")
