"""Topic replay for debugging: read a conversation back, re-drive dead letters, re-feed a sandbox.

A conversation's records all sit in one partition of each topic (they are keyed by its id), so
``show`` reads just that partition of every contract topic, by time or offset range, and
prints them merged in time order. ``redrive`` puts a dead-letter topic's records back on the
topic they came from, once: its consumer group remembers how far it got. ``refeed`` sends a
conversation's user messages through the pipeline again as a new conversation on the
``sandbox`` channel — same tenant and application, ids under a sandbox prefix — so the bot
answers them as it would today, and the delivery agent stores the answers without sending
them anywhere.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from core import ids
from core.settings import Settings
from streams.admin import contract_topics
from streams.contract import CHANGELOGS, MESSAGES_INBOUND, REDRIVEN_HEADER, SANDBOX_CHANNEL
from streams.records import DeadLetter, InboundMessage, decode, encode

REDRIVE_GROUP = "switchboard-redrive"


@dataclass(frozen=True)
class Replayed:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: str
    value: dict[str, Any] | str  # the record as JSON, or the raw text of one that is not JSON

    @property
    def kind(self) -> str:
        if isinstance(self.value, dict):
            ns = self.value.get("__faust", {}).get("ns", "")
            return str(ns).rsplit(".", 1)[-1] or "record"
        return "undecodable"

    def as_json(self) -> str:
        return json.dumps(
            {
                "topic": self.topic,
                "partition": self.partition,
                "offset": self.offset,
                "timestamp": self.timestamp_ms / 1000,
                "key": self.key,
                "kind": self.kind,
                "value": self.value,
            },
            ensure_ascii=False,
        )

    def as_text(self) -> str:
        when = datetime.fromtimestamp(self.timestamp_ms / 1000, tz=UTC).isoformat(
            timespec="milliseconds"
        )
        where = f"{self.topic}[{self.partition}]@{self.offset}"
        return f"{when} {where:<34} {self.kind:<20} {_summary(self.value)}"


def _summary(value: dict[str, Any] | str) -> str:
    if not isinstance(value, dict):
        return repr(value[:120])
    parts = [str(value.get("message_id", ""))]
    for field in ("type", "action", "sender_role", "mode", "reason"):
        if value.get(field):
            parts.append(f"{field}={value[field]}")
    if value.get("text"):
        parts.append(repr(str(value["text"])[:80]))
    return " ".join(parts)


def partition_of(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2, as Faust uses) picks for ``key``."""
    chosen: int = DefaultPartitioner()(key.encode(), list(range(partitions)), [])
    return chosen


def _decode(raw: bytes | None) -> dict[str, Any] | str:
    text = (raw or b"").decode(errors="replace")
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, dict) else text


async def conversation_records(
    settings: Settings,
    conversation_id: str,
    *,
    topics: Iterable[str] | None = None,
    since: float | None = None,
    until: float | None = None,
    from_offset: int | None = None,
    to_offset: int | None = None,
) -> list[Replayed]:
    """Every record of one conversation on the given topics (all contract topics by default)."""
    counts = {
        name: spec.partitions
        for name, spec in contract_topics().items()
        if spec not in CHANGELOGS  # partitioned by source record, not by key: not replayable
    }
    wanted = list(topics) if topics else list(counts)
    unknown = [topic for topic in wanted if topic not in counts]
    if unknown:
        raise ValueError(f"not contract topics: {', '.join(unknown)}")
    partitions = [TopicPartition(t, partition_of(conversation_id, counts[t])) for t in wanted]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.beginning_offsets(partitions)
        if since is not None:
            found = await consumer.offsets_for_times({tp: int(since * 1000) for tp in partitions})
            starts = {tp: (hit.offset if hit else ends[tp]) for tp, hit in found.items()}
        for tp in partitions:
            consumer.seek(tp, max(starts[tp], from_offset or 0))
        records = await _read_until(consumer, ends, to_offset)
    finally:
        await consumer.stop()
    key = conversation_id.encode()
    chosen = [
        Replayed(r.topic, r.partition, r.offset, r.timestamp, conversation_id, _decode(r.value))
        for r in records
        if r.key == key and (until is None or r.timestamp <= until * 1000)
    ]
    return sorted(chosen, key=lambda r: (r.timestamp_ms, wanted.index(r.topic), r.offset))


async def _read_until(
    consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int], to_offset: int | None
) -> list[Any]:
    records: list[Any] = []
    stops = {tp: end if to_offset is None else min(end, to_offset + 1) for tp, end in ends.items()}
    pending = {tp for tp in stops if await consumer.position(tp) < stops[tp]}
    while pending:
        batch = await consumer.getmany(*pending, timeout_ms=1000)
        for tp, messages in batch.items():
            records += [m for m in messages if m.offset < stops[tp]]
        pending = {tp for tp in pending if await consumer.position(tp) < stops[tp]}
    return records


async def redrive(
    settings: Settings, dead_letter_topic: str, *, dry_run: bool = False
) -> list[DeadLetter]:
    """Put every dead letter not yet re-driven back on its source topic; returns them."""
    if not dead_letter_topic.endswith(".dlq") or dead_letter_topic not in contract_topics():
        raise ValueError(f"{dead_letter_topic} is not a dead-letter topic of the contract")
    consumer = AIOKafkaConsumer(
        dead_letter_topic,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=REDRIVE_GROUP,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await consumer.start()
    await producer.start()
    letters: list[DeadLetter] = []
    try:
        partitions = list(consumer.assignment())
        deadline = time.monotonic() + 30
        while not partitions:  # wait for the group to assign the topic's partitions
            if time.monotonic() > deadline:
                raise TimeoutError(f"no partitions of {dead_letter_topic} were assigned")
            await consumer.getmany(timeout_ms=200)
            partitions = list(consumer.assignment())
        ends = await consumer.end_offsets(partitions)
        for record in await _read_until(consumer, ends, None):
            letter = DeadLetter.loads(record.value, serializer="json")
            if not dry_run:
                await producer.send_and_wait(
                    letter.source_topic,
                    key=letter.key.encode(),
                    value=letter.value.encode(),
                    headers=[(REDRIVEN_HEADER, b"1")],
                )
            letters.append(letter)
        if not dry_run:
            await consumer.commit({tp: ends[tp] for tp in partitions})
    finally:
        await producer.stop()
        await consumer.stop()
    return letters


async def refeed(
    settings: Settings,
    conversation_id: str,
    sandbox: str,
    *,
    since: float | None = None,
    until: float | None = None,
) -> list[InboundMessage]:
    """Send the conversation's user messages again, in order, into sandbox ``sandbox``.

    The copies form one new conversation per (conversation, sandbox): re-feeding into the same
    sandbox again is recognised as a redelivery and changes nothing; a new sandbox name starts
    afresh.
    """
    if not sandbox or any(c.isspace() for c in sandbox):
        raise ValueError("a sandbox name is one word, such as 'prompt-v2'")
    originals = await conversation_records(
        settings, conversation_id, topics=[MESSAGES_INBOUND], since=since, until=until
    )
    copies: list[InboundMessage] = []
    for original in originals:
        if not isinstance(original.value, dict):
            continue  # an undecodable record: the dead-letter topic already has it
        record = decode(json.dumps(original.value).encode())
        if not isinstance(record, InboundMessage):
            continue
        copies.append(sandboxed(record, sandbox))
    if not copies:
        return []
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for copy in copies:
            await producer.send_and_wait(
                MESSAGES_INBOUND, key=copy.conversation_id.encode(), value=encode(copy)
            )
    finally:
        await producer.stop()
    return copies


def sandboxed(message: InboundMessage, sandbox: str) -> InboundMessage:
    """The copy of a user's message that belongs to sandbox ``sandbox``."""
    chat = f"{sandbox}:{message.conversation_id}"
    return InboundMessage(
        message_id=ids.sandbox_message_id(sandbox, message.message_id),
        conversation_id=ids.conversation_id(SANDBOX_CHANNEL, sandbox, chat),
        workspace_id=message.workspace_id,
        application_id=message.application_id,
        channel=SANDBOX_CHANNEL,
        channel_id=sandbox,
        chat_id=chat,
        created_at=time.time(),
        trace_id=message.trace_id,
        external_id=message.message_id,
        sender_id=message.sender_id,
        sender_name=message.sender_name,
        text=message.text,
        attachments=message.attachments,
    )
