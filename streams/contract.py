"""The Kafka contract: every topic's name, partitions, configuration and dead-letter twin.

Every record is keyed by its conversation id, so all of one conversation's records land in one
partition, in order. The partition count is part of the contract: changing it moves keys between
partitions. Each consumed topic has a dead-letter twin, ``<topic>.dlq``.

Nothing here imports Faust, so any process (the web services, the CLI, the tests) can name a
topic without building the Faust app; ``streams.topics`` builds Faust's topics from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

PARTITIONS = 8

#: The channel of conversations re-fed for debugging (``switchboard replay refeed``): the
#: pipeline runs them like any other, and the delivery agent sends nothing anywhere for them.
SANDBOX_CHANNEL = "sandbox"
#: The channel of conversations started by a tenant's server through the applications API.
API_CHANNEL = "api"
#: The web chat widget's channel: its channel id is the application's id, its chat the visitor.
WEB_CHANNEL = "web"

#: The Kafka header a re-driven record carries (``switchboard replay redrive``): the platform
#: sender sends its message even where a stopped worker left it uncertain
#: (``core.stores.send_ledger``), as an operator chose.
REDRIVEN_HEADER = "switchboard-redriven"

MESSAGES_INBOUND = "messages.inbound"
AGENT_REQUESTS = "agent.requests"
FUNCTION_CALLS = "function.calls"
FUNCTION_RESULTS = "function.results"
MESSAGES_OUTBOUND = "messages.outbound"
PLATFORM_OUTBOUND = "platform.outbound"
CONVERSATION_COMMANDS = "conversation.commands"
CONVERSATION_EVENTS = "conversation.events"

#: The table changelog Faust names after the app id and the table (``tables.conversations``).
CONVERSATION_STATE_CHANGELOG = "switchboard-conversation-state-changelog"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    purpose: str
    partitions: int = PARTITIONS
    #: Topic-level Kafka configuration, applied when the topic is created and kept in force.
    configs: Mapping[str, str] = field(default_factory=dict)

    @property
    def dead_letter(self) -> str:
        return dead_letter_of(self.name)


def dead_letter_of(topic: str) -> str:
    """The dead-letter twin of a consumed topic."""
    return f"{topic}.dlq"


CONTRACT: tuple[TopicSpec, ...] = (
    TopicSpec(MESSAGES_INBOUND, "normalized messages from every channel, for message-process"),
    TopicSpec(AGENT_REQUESTS, "turns the AI agent must answer (bot-mode conversations only)"),
    TopicSpec(FUNCTION_CALLS, "tool calls requested by the model"),
    TopicSpec(FUNCTION_RESULTS, "tool results, back to the AI agent"),
    TopicSpec(MESSAGES_OUTBOUND, "bot and operator messages, for the delivery agent"),
    TopicSpec(PLATFORM_OUTBOUND, "sends to messaging platforms, for the platform sender"),
    TopicSpec(CONVERSATION_COMMANDS, "operator takeover, release, close, assign and reply"),
    TopicSpec(CONVERSATION_EVENTS, "status changes, new messages and failures, for operators"),
)

#: The topics whose dead letters are failed deliveries, which operators hear of.
DELIVERY_TOPICS = (MESSAGES_OUTBOUND, PLATFORM_OUTBOUND)


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
        CONVERSATION_STATE_CHANGELOG,
        "the conversation-state table (tables.conversations), written by message-process",
        configs=COMPACTED,
    ),
)
