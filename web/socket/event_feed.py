"""The operators' live feed: ``conversation.events`` records, pushed to the ``/inbox`` rooms.

Every socket-service instance joins one consumer group, so each event is read once, and emits
it through the Redis manager, so it reaches every instance's clients. The feed is live: a new
group starts at the end of the topic, and an operator who was away reloads through the REST API.
Offsets are committed automatically; an event replayed after a crash repeats its ``id``, which
clients deduplicate on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition
from redis.exceptions import RedisError

from core.clients.realtime import conversation_room
from core.settings import Settings
from streams.contract import CONVERSATION_EVENTS
from streams.records import ConversationEvent, UndecodableRecord, decode

log = logging.getLogger(__name__)

GROUP_ID = "switchboard-inbox-feed"
#: Event types that stay inside the pipeline (an AI turn's record is for replay, not operators).
INTERNAL_TYPES = frozenset({"turn.completed", "turn.failed"})
RETRY_S = 2.0
STOP_TIMEOUT_S = 5.0

Emit = Callable[[dict[str, Any], list[str]], Awaitable[None]]


def workspace_room(workspace_id: str) -> str:
    return f"workspace:{workspace_id}"


def application_room(application_id: str) -> str:
    return f"application:{application_id}"


def rooms_of(event: ConversationEvent) -> list[str]:
    """The rooms that see ``event``: its workspace's, its application's and its conversation's."""
    return [
        workspace_room(event.workspace_id),
        application_room(event.application_id),
        conversation_room(event.conversation_id),
    ]


def view_of(event: ConversationEvent) -> dict[str, Any]:
    """What an operator's client receives (docs/realtime.md, ``event``)."""
    return {
        "id": event.message_id,
        "type": event.type,
        "conversation_id": event.conversation_id,
        "application_id": event.application_id,
        "channel": event.channel,
        "subject_id": event.subject_id,
        "mode": event.mode,
        "data": event.data or {},
        "created_at": event.created_at,
    }


class _Assignment(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, assigned: asyncio.Event) -> None:
        self._assigned = assigned

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self._assigned.clear()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self._assigned.set()


class EventFeed:
    def __init__(self, settings: Settings, emit: Emit) -> None:
        self._settings = settings
        self._emit = emit
        #: Set while this instance holds partitions (or the group gave it none after a join).
        self.assigned = asyncio.Event()

    async def run(self) -> None:
        """Feed until cancelled; Kafka being down only delays the feed."""
        while True:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self._settings.kafka_bootstrap,
                group_id=GROUP_ID,
                enable_auto_commit=True,
                auto_offset_reset="latest",
            )
            consumer.subscribe([CONVERSATION_EVENTS], listener=_Assignment(self.assigned))
            try:
                await consumer.start()
                async for record in consumer:
                    await self._push(record.value)
            except (KafkaError, OSError) as error:
                log.warning("inbox feed: Kafka failed (%s); retrying in %.0fs", error, RETRY_S)
            finally:
                self.assigned.clear()
                # Leaving the group mid-rebalance was seen to hang; a stop must not.
                with contextlib.suppress(TimeoutError, KafkaError):
                    await asyncio.wait_for(consumer.stop(), STOP_TIMEOUT_S)
            await asyncio.sleep(RETRY_S)

    async def _push(self, raw: bytes | None) -> None:
        try:
            event = decode(raw)
        except UndecodableRecord as error:
            log.warning("inbox feed: skipped a record that is not an event: %s", error)
            return
        if not isinstance(event, ConversationEvent) or event.type in INTERNAL_TYPES:
            return
        try:
            await self._emit(view_of(event), rooms_of(event))
        except (RedisError, OSError) as error:
            log.warning("inbox feed: could not push event %s: %s", event.message_id, error)
