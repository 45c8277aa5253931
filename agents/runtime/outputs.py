"""What stages produce: records handed to the producer together, and operators' events."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any

from core import ids
from streams.records import ConversationEvent, PipelineRecord, encode
from streams.topics import conversation_events


@dataclass(frozen=True)
class Send:
    """One record to produce: the topic (a Faust topic), its key, and the record."""

    topic: Any
    key: str
    record: PipelineRecord


async def publish_all(sends: Sequence[Send]) -> None:
    """Produce every record, in order, then wait until the broker has acked them all.

    The producer keeps each partition's records in the order they were handed to it, so a
    conversation's records keep their order; the input is committed only after the acks.
    """
    pending: list[Awaitable[Any]] = []
    for send in sends:
        # Straight to the app's producer: Faust's Topic.send adds bookkeeping that cost a third
        # of a worker's time here, and none of it is used (the ack is awaited below).
        producer = send.topic.app.producer
        pending.append(
            await producer.send(
                send.topic.get_topic_name(),
                send.key.encode(),
                encode(send.record),
                None,
                None,
                None,
            )
        )
    await asyncio.gather(*pending)


def event_of(record: PipelineRecord, kind: str, subject_id: str, **fields: Any) -> Send:
    """A conversation event about ``subject_id``, for operators' live feed."""
    event = ConversationEvent(
        **record.envelope(ids.event_id(subject_id, kind), time.time()),
        type=kind,
        subject_id=subject_id,
        **fields,
    )
    return Send(conversation_events, record.conversation_id, event)
