"""Drive the real pipeline: worker processes, a stand-in for the AI stage, and a collector.

The stand-in answers each agent request once (by request id, as the AI stage must), and the
collector reads what the delivery agent routed to platform.outbound. Everything is filtered by
the test's own conversation ids, so records of earlier runs on the same topics do not matter.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Self

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from core import ids
from core.clients.database import Document, new_mongo_client
from core.settings import Settings
from streams.contract import (
    AGENT_REQUESTS,
    CONVERSATION_EVENTS,
    MESSAGES_OUTBOUND,
    PLATFORM_OUTBOUND,
)
from streams.records import (
    AgentRequest,
    ConversationCommand,
    FunctionCall,
    InboundMessage,
    PlatformSend,
    bot_answer,
    decode,
    encode,
)


class Worker:
    """One `switchboard worker` process with its output in a file.

    Its AI stage is off unless asked for: most pipeline tests answer requests themselves. So is
    its platform sender: pipeline tests read platform.outbound (``Collector``), and their
    channels are connected to no platform.
    """

    def __init__(
        self,
        log_dir: Path,
        name: str,
        *,
        ai: bool = False,
        sender: bool = False,
        env: dict[str, str] | None = None,
    ) -> None:
        self.log = log_dir / f"{name}.log"
        self.ai = ai
        self.sender = sender
        self.env = env or {}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "infra.cli", "worker", "--loglevel", "info"],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={
                    **os.environ,
                    "PYTHONUNBUFFERED": "1",
                    "SWITCHBOARD_AI_AGENT_ENABLED": "true" if self.ai else "false",
                    "SWITCHBOARD_PLATFORM_SENDER_ENABLED": "true" if self.sender else "false",
                    **self.env,
                },
            )

    def ready_count(self) -> int:
        return self.log.read_text(errors="replace").count("[^Worker]: Ready")

    def wait_ready(self, previous: int = 0, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while self.ready_count() <= previous:
            assert self.process is not None
            assert self.process.poll() is None, self.tail()
            assert time.monotonic() < deadline, f"worker not ready after {timeout}s\n{self.tail()}"
            time.sleep(0.2)

    def kill(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            return -9

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def running(worker: Worker) -> Iterator[Worker]:
    """``worker`` started and ready for the length of a ``with`` block, then stopped cleanly."""
    worker.start()
    try:
        worker.wait_ready()
        yield worker
    finally:
        assert worker.stop() in (0, -9), worker.tail()


def platform_channel_id(application_id: str) -> str:
    """The telegram channel ``create_application`` connects to every application it creates."""
    return f"ch_{application_id}"


class Conversation:
    """A test conversation on a platform channel, so answers reach platform.outbound.

    Its channel is the application's own (``channel_id`` names another, for tests that must be
    refused).
    """

    def __init__(
        self,
        workspace_id: str,
        application_id: str,
        chat: str,
        channel: str = "telegram",
        channel_id: str | None = None,
    ) -> None:
        self.workspace_id = workspace_id
        self.application_id = application_id
        self.channel = channel
        # The widget's channel is its application; a platform's is the connected channel.
        if channel_id is None:
            channel_id = application_id if channel == "web" else platform_channel_id(application_id)
        self.channel_id = channel_id
        self.chat_id = chat
        self.id = ids.conversation_id(channel, self.channel_id, chat)

    def _envelope(self, message_id: str) -> dict[str, Any]:
        return {
            "message_id": message_id,
            "conversation_id": self.id,
            "workspace_id": self.workspace_id,
            "application_id": self.application_id,
            "channel": self.channel,
            "channel_id": self.channel_id,
            "chat_id": self.chat_id,
            "created_at": time.time(),
            "trace_id": uuid.uuid4().hex,
        }

    def message(self, external_id: str, text: str) -> InboundMessage:
        mid = ids.inbound_message_id(self.channel, self.channel_id, self.chat_id, external_id)
        return InboundMessage(
            **self._envelope(mid), external_id=external_id, sender_id=self.chat_id, text=text
        )

    def command(self, action: str, **fields: Any) -> ConversationCommand:
        return ConversationCommand(
            **self._envelope(ids.new_id("cmd")), action=action, operator_id="op_1", **fields
        )

    def function_call(
        self, name: str, arguments: dict[str, Any], request_id: str = "rq_test"
    ) -> FunctionCall:
        """A call of tool ``name`` as the AI stage writes it (its id is also the message id)."""
        call_id = ids.new_id("fc")
        return FunctionCall(
            **self._envelope(call_id),
            request_id=request_id,
            call_id=call_id,
            name=name,
            arguments=arguments,
        )


async def send_all(settings: Settings, topic: str, records: Iterable[Any]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        futures = [
            await producer.send(topic, key=r.conversation_id.encode(), value=encode(r))
            for r in records
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def create_application(
    settings: Settings,
    workspace_id: str,
    application_id: str | None = None,
    **fields: Any,
) -> str:
    """An application, and the telegram channel connected to it that ``Conversation`` uses."""
    application_id = application_id or ids.new_id("app")
    client = new_mongo_client(settings)
    try:
        db = client[settings.mongo_database]
        await db["applications"].insert_one(
            {"_id": application_id, "workspace_id": workspace_id, "name": "pipeline test", **fields}
        )
        await db["channels"].insert_one(
            {
                "_id": platform_channel_id(application_id),
                "workspace_id": workspace_id,
                "application_id": application_id,
                "type": "telegram",
                "status": "active",
            }
        )
    finally:
        await client.close()
    return application_id


class _Background:
    """Runs ``_run`` as a task for the length of an ``async with`` block."""

    def __init__(self, settings: Settings, conversations: set[str]) -> None:
        self.settings = settings
        self.conversations = conversations
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        raise NotImplementedError


class Responder(_Background):
    """Stands in for the AI stage: answers each request of the test's conversations once."""

    def __init__(self, settings: Settings, conversations: set[str], delay_s: float = 0.0) -> None:
        super().__init__(settings, conversations)
        self.delay_s = delay_s
        self.requests: dict[str, AgentRequest] = {}
        self.got_request = asyncio.Event()

    async def _run(self) -> None:
        consumer = AIOKafkaConsumer(
            AGENT_REQUESTS,
            bootstrap_servers=self.settings.kafka_bootstrap,
            group_id=f"test-responder-{uuid.uuid4().hex[:8]}",
            auto_offset_reset="earliest",
        )
        producer = AIOKafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap, acks="all")
        await consumer.start()
        await producer.start()
        try:
            async for record in consumer:
                if record.key is None or record.key.decode() not in self.conversations:
                    continue
                request = decode(record.value)
                assert isinstance(request, AgentRequest)
                if request.request_id in self.requests:
                    continue
                self.requests[request.request_id] = request
                self.got_request.set()
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                answer = bot_answer(request, f"echo: {request.text}", created_at=time.time())
                await producer.send_and_wait(
                    MESSAGES_OUTBOUND, key=record.key, value=encode(answer)
                )
        finally:
            await consumer.stop()
            await producer.stop()


class Collector(_Background):
    """Reads platform.outbound (what would reach users) for the test's conversations."""

    def __init__(self, settings: Settings, conversations: set[str]) -> None:
        super().__init__(settings, conversations)
        self.sends: dict[str, list[PlatformSend]] = defaultdict(list)
        #: When each answer was produced to platform.outbound (the record's time), per send.
        self.produced_at: dict[str, list[float]] = defaultdict(list)

    async def _run(self) -> None:
        consumer = AIOKafkaConsumer(
            PLATFORM_OUTBOUND,
            bootstrap_servers=self.settings.kafka_bootstrap,
            group_id=f"test-collector-{uuid.uuid4().hex[:8]}",
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            async for record in consumer:
                key = record.key.decode() if record.key else ""
                if key in self.conversations:
                    send = decode(record.value)
                    assert isinstance(send, PlatformSend)
                    self.sends[key].append(send)
                    self.produced_at[send.message_id].append(record.timestamp / 1000)
        finally:
            await consumer.stop()

    def total(self) -> int:
        return sum(len(v) for v in self.sends.values())

    async def wait_for(self, count: int, within_s: float) -> None:
        deadline = time.monotonic() + within_s
        while self.total() < count:
            assert time.monotonic() < deadline, f"only {self.total()} of {count} sends arrived"
            await asyncio.sleep(0.25)


async def read_topic(settings: Settings, topic: str, keys: set[str], within_s: float,
                     want: int) -> list[Any]:  # fmt: skip
    """Records on ``topic`` whose key is one of ``keys``, waiting until ``want`` have arrived."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=f"test-reader-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    found: list[Any] = []
    deadline = time.monotonic() + within_s
    try:
        while len(found) < want and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                found += [r for r in records if r.key and r.key.decode() in keys]
    finally:
        await consumer.stop()
    return found


async def send_raw(settings: Settings, topic: str, key: str, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, key=key.encode(), value=value)
    finally:
        await producer.stop()


async def wait_for_event(
    settings: Settings, conversation_id: str, kind: str, count: int, within_s: float = 60
) -> None:
    """Wait until operators' feed (conversation.events) shows ``count`` events of ``kind``."""
    consumer = AIOKafkaConsumer(
        CONVERSATION_EVENTS,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=f"test-events-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    seen = 0
    deadline = time.monotonic() + within_s
    try:
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    if record.key == conversation_id.encode():
                        seen += json.loads(record.value)["type"] == kind
            if seen >= count:
                return
    finally:
        await consumer.stop()
    raise AssertionError(f"{seen} of {count} {kind} events for {conversation_id}")


async def insert_documents(settings: Settings, collection: str, *docs: Document) -> None:
    client = new_mongo_client(settings)
    try:
        await client[settings.mongo_database][collection].insert_many(list(docs))
    finally:
        await client.close()


async def documents(settings: Settings, collection: str, workspace_id: str) -> list[Document]:
    """A workspace's documents in one collection."""
    client = new_mongo_client(settings)
    try:
        return [
            doc
            async for doc in client[settings.mongo_database][collection].find(
                {"workspace_id": workspace_id}
            )
        ]
    finally:
        await client.close()
