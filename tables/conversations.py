"""Conversation state, written only by the message-process agent and read by the delivery agent.

Changelog-backed: a restarted worker, or one taking over a partition, rebuilds it from Kafka.
Both agents consume topics keyed by conversation id with the same partition count, so a
conversation's state is always on the worker that handles its records.
"""

# Faust reads these annotations at class creation: keep them as real typing objects.
from typing import Any, Dict, List, Optional  # noqa: UP035

import faust

from streams.app import app
from streams.contract import PARTITIONS

#: How many recent turns the state keeps for the AI stage's context window.
CONTEXT_WINDOW = 20
#: How many recently applied record ids the state remembers, to ignore a redelivered record.
RECENT_IDS = 64


class ConversationState(faust.Record, serializer="json", namespace="switchboard.ConversationState"):
    conversation_id: str
    workspace_id: str
    application_id: str
    channel: str
    channel_id: str = ""
    chat_id: str = ""
    mode: str = "bot"  # bot, human, closed
    epoch: int = 0  # bumped on every mode change: a bot answer from an older epoch is stale
    assignee_id: str = ""
    inbound_count: int = 0
    outbound_count: int = 0
    suppressed_count: int = 0
    last_activity: float = 0.0
    context: Optional[List[Dict[str, Any]]] = None  # noqa: UP006, UP045
    # Recently applied record ids, oldest first, each with its inbound sequence (0: a command).
    applied: Optional[Dict[str, int]] = None  # noqa: UP006, UP045

    def seen(self, record_id: str) -> bool:
        return record_id in (self.applied or {})

    def remember(self, record_id: str, seq: int = 0) -> None:
        applied = {**(self.applied or {}), record_id: seq}
        self.applied = dict(list(applied.items())[-RECENT_IDS:])

    def seq_of(self, record_id: str) -> int:
        return (self.applied or {}).get(record_id, 0)

    def add_turn(self, role: str, text: str, message_id: str) -> None:
        turn = {"role": role, "text": text, "message_id": message_id}
        self.context = [*(self.context or []), turn][-CONTEXT_WINDOW:]


conversation_state = app.Table(
    "conversation-state",
    default=None,
    key_type=str,
    value_type=ConversationState,
    partitions=PARTITIONS,
)
