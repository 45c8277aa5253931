"""The contract's topics as Faust topics, for the agents (``streams.contract`` names them)."""

from __future__ import annotations

import faust

from streams.app import app
from streams.contract import (
    AGENT_REQUESTS,
    CONTRACT,
    CONVERSATION_COMMANDS,
    CONVERSATION_EVENTS,
    FUNCTION_CALLS,
    FUNCTION_RESULTS,
    MESSAGES_INBOUND,
    MESSAGES_OUTBOUND,
    PARTITIONS,
    PLATFORM_OUTBOUND,
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

messages_inbound = TOPICS[MESSAGES_INBOUND]
agent_requests = TOPICS[AGENT_REQUESTS]
function_calls = TOPICS[FUNCTION_CALLS]
function_results = TOPICS[FUNCTION_RESULTS]
messages_outbound = TOPICS[MESSAGES_OUTBOUND]
platform_outbound = TOPICS[PLATFORM_OUTBOUND]
conversation_commands = TOPICS[CONVERSATION_COMMANDS]
conversation_events = TOPICS[CONVERSATION_EVENTS]

#: What the message-process agent consumes: users' messages and operators' commands, both keyed
#: by conversation id and co-partitioned, so one agent applies them in order to one table.
message_process_source = _declare(MESSAGES_INBOUND, CONVERSATION_COMMANDS)
