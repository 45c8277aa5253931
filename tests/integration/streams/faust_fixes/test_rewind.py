"""The offset guard's rewind on a real Faust app and Kafka: records the stream skipped are
fetched again by the guard's seek, through Faust's consumer thread, and handed over again at
once, although older records were still being handed over after the seek (the held read
offset; without it that first seek comes to nothing and the guard has to seek again)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import faust
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faust.transport.consumer import Consumer
from faust.transport.producer import ProducerBuffer
from mode.utils.queues import FlowControlEvent

from core.settings import Settings
from streams.faust_fixes import intake, read_offsets, skips
from streams.faust_fixes.continuity import OffsetContinuity

RECORDS = 100
SKIPPED = {3, 4, 5}  # as Faust's stream skips them in a rebalance, once


@pytest.fixture(autouse=True)
def faust_classes() -> Iterator[None]:
    """Put back, after the test, what the fixes' ``install()`` put on Faust's classes."""
    classes = (Consumer, ProducerBuffer, FlowControlEvent)
    before = {cls: dict(vars(cls)) for cls in classes}
    yield
    for cls, attributes in before.items():
        for name in set(vars(cls)) - set(attributes):
            delattr(cls, name)
        for name, value in attributes.items():
            if vars(cls).get(name) is not value:
                setattr(cls, name, value)


@pytest.fixture
async def topic(settings: Settings) -> AsyncIterator[str]:
    """A topic of its own, one partition, holding offsets 0 to RECORDS - 1."""
    name = f"test.faust-fixes.rewind.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
        await producer.start()
        try:
            for offset in range(RECORDS):
                await producer.send(name, key=b"conversation", value=str(offset).encode())
            await producer.flush()
        finally:
            await producer.stop()
        yield name
        await admin.delete_topics([name])
    finally:
        await admin.close()


async def test_a_skipped_record_is_fetched_again_from_kafka(
    settings: Settings, topic: str, tmp_path: Path
) -> None:
    intake.install()  # as a worker runs by default
    read_offsets.install()
    skips.install()
    app = faust.App(
        f"test-faust-fixes-rewind-{uuid.uuid4().hex[:8]}",
        broker=settings.kafka_url,
        store="memory://",
        datadir=tmp_path,  # Faust writes its app directory even with a memory store
        web_enabled=False,
        topic_partitions=1,
        # A small stream buffer, and an agent that takes a moment a record, keep Faust's fetch
        # loop handing over older records after the guard's seek, as on a busy worker.
        stream_buffer_maxsize=4,
        # As the worker (streams/app.py): stopping does not wait for every record to be acked,
        # which a test whose agent gave up would wait for for ever.
        stream_wait_empty=False,
    )
    admitted: list[int] = []
    seen_skipped: set[int] = set()
    crashed: list[BaseException] = []
    done = asyncio.Event()
    consumer: Any = app.consumer  # created now, with the fixes installed
    seeks: list[dict[Any, int]] = []
    faust_seek_wait = consumer.seek_wait

    async def seek_wait(partitions: dict[Any, int]) -> None:
        seeks.append(dict(partitions))
        await faust_seek_wait(partitions)

    consumer.seek_wait = seek_wait

    @app.agent(app.topic(topic, value_serializer="raw"))
    async def agent(stream: Any) -> None:
        manual = stream.noack()
        guard = OffsetContinuity("test", consumer)
        try:
            async for event in manual.events():
                offset = event.message.offset
                if offset in SKIPPED and offset not in seen_skipped:
                    seen_skipped.add(offset)  # the first time, as if Faust's stream skipped it
                    continue
                for record in await guard.admit([event]):
                    admitted.append(record.message.offset)
                    await skips.ack(manual, record)
                await asyncio.sleep(0.002)  # its writes
                if len(admitted) >= RECORDS:
                    done.set()
        except Exception as crash:  # reported by the test, not left to Faust's supervisor
            crashed.append(crash)
            done.set()

    await app.start()
    try:
        await asyncio.wait_for(done.wait(), timeout=30)
    finally:
        stopping = asyncio.ensure_future(app.stop())
        stopped, _ = await asyncio.wait({stopping}, timeout=30)  # not cancelled: mode ignores it
        assert stopped, "the Faust app did not stop"
    assert crashed == []
    assert seen_skipped == SKIPPED
    assert admitted == list(range(RECORDS))
    assert [list(sought.values()) for sought in seeks] == [[3]], "one seek, back to the hole"
