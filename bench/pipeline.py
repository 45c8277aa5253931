"""Inbound→outbound through the pipeline, against a raw aiokafka relay chain of as many hops.

Pipeline: messages.inbound → message-process (MongoDB, table, events) → agent.requests →
an immediate responder standing in for the AI stage → messages.outbound → delivery (MongoDB)
→ platform.outbound. Baseline: four topics joined by three relays that only forward, one of
them in this process like the responder, the other two in a separate process like the worker.
Each is warmed up (500 messages, not counted), then driven twice: as fast as it goes
(throughput, latency under load), then paced at 500 messages a second, half the 1,000 of the
goal (latency at a sustainable rate; the same rate in every run, so runs compare).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.relay import forward
from core import ids
from core.clients.database import new_mongo_client
from core.settings import Settings
from streams.contract import AGENT_REQUESTS, MESSAGES_INBOUND, MESSAGES_OUTBOUND, PLATFORM_OUTBOUND
from streams.records import AgentRequest, InboundMessage, bot_answer, decode, encode

CONVERSATIONS = 200
WARM_UP = 500
BURST = 4000
PACED = 2000
#: The goal is 1,000 msg/s end to end, with p99 under 100 ms at half that rate.
PACED_RATE = 500.0
RAW_TOPICS = ("bench.raw.in", "bench.raw.requests", "bench.raw.outbound", "bench.raw.sends")


@dataclass(frozen=True)
class Run:
    name: str
    messages: int
    per_second: float
    p50_ms: float
    p99_ms: float


Encode = Callable[[str, int], tuple[str, bytes]]  # (message id, index) -> (key, value)
ArrivalId = Callable[[bytes], str | None]  # an arriving record's value -> the message id


async def _drive(
    settings: Settings,
    name: str,
    source: str,
    sink: str,
    encode_one: Encode,
    arrival_id: ArrivalId,
    count: int,
    rate: float | None,
) -> Run:
    consumer = AIOKafkaConsumer(
        sink, bootstrap_servers=settings.kafka_bootstrap,
        group_id=f"bench-sink-{uuid.uuid4().hex[:8]}", auto_offset_reset="latest",
    )  # fmt: skip
    await consumer.start()
    while not consumer.assignment():
        await consumer.getmany(timeout_ms=200)
    await consumer.seek_to_end()
    sent: dict[str, float] = {}
    arrived: dict[str, float] = {}

    async def collect() -> None:
        while len(arrived) < count:
            batch = await consumer.getmany(timeout_ms=200)
            now = time.perf_counter()
            for records in batch.values():
                for record in records:
                    found = arrival_id(record.value)
                    if found in sent and found not in arrived:
                        arrived[found] = now

    collector = asyncio.create_task(collect())
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    began = time.perf_counter()
    try:
        for index in range(count):
            if rate is not None:
                await asyncio.sleep(max(0.0, began + index / rate - time.perf_counter()))
            message_id = ids.new_id("bench")
            key, value = encode_one(message_id, index)
            sent[message_id] = time.perf_counter()
            await producer.send(source, key=key.encode(), value=value)
        await producer.flush()
        await asyncio.wait_for(collector, timeout=600)
    finally:
        collector.cancel()
        await producer.stop()
        await consumer.stop()
    latencies = sorted((arrived[m] - sent[m]) * 1000 for m in sent)
    return Run(
        name,
        count,
        count / (max(arrived.values()) - began),
        statistics.median(latencies),
        latencies[int(len(latencies) * 0.99) - 1],
    )


async def _respond(
    settings: Settings, source: str, target: str, answer: Callable[[bytes], bytes]
) -> None:
    """The in-process hop: answer every record at once (the stand-in for the AI stage).

    It answers a fetched batch at a time, like the relays, so that it is not what limits either
    chain.
    """
    consumer = AIOKafkaConsumer(
        source, bootstrap_servers=settings.kafka_bootstrap,
        group_id=f"bench-responder-{uuid.uuid4().hex[:8]}", auto_offset_reset="latest",
        enable_auto_commit=False,
    )  # fmt: skip
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await consumer.start()
    await producer.start()
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=200)
            if batch:
                await forward(producer, target, batch, answer)
                await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()


def _answer(raw: bytes) -> bytes:
    request = decode(raw)
    assert isinstance(request, AgentRequest)
    return encode(bot_answer(request, request.text, created_at=time.time()))


def _channel_id(application: str) -> str:
    return f"ch_{application}"


def _pipeline_codec(workspace: str, application: str) -> tuple[Encode, ArrivalId]:
    channel_id = _channel_id(application)

    def encode_one(message_id: str, index: int) -> tuple[str, bytes]:
        chat = f"bench-{index % CONVERSATIONS}"
        conversation = ids.conversation_id("telegram", channel_id, chat)
        record = InboundMessage(
            message_id=message_id, conversation_id=conversation, workspace_id=workspace,
            application_id=application, channel="telegram", channel_id=channel_id,
            chat_id=chat, created_at=time.time(), text=f"message {index}",
        )  # fmt: skip
        return conversation, encode(record)

    def arrival_id(raw: bytes) -> str | None:
        return str(getattr(decode(raw), "in_reply_to", "")) or None

    return encode_one, arrival_id


def _raw_codec() -> tuple[Encode, ArrivalId]:
    def encode_one(message_id: str, index: int) -> tuple[str, bytes]:
        return f"bench-{index % CONVERSATIONS}", message_id.encode()

    return encode_one, lambda raw: raw.decode()


async def _prepare(settings: Settings) -> tuple[str, str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        missing = set(RAW_TOPICS) - set(await admin.list_topics())
        if missing:
            await admin.create_topics([NewTopic(t, 8, 1) for t in sorted(missing)])
    finally:
        await admin.close()
    workspace, application = ids.new_id("ws"), ids.new_id("app")
    client = new_mongo_client(settings)
    try:
        db = client[settings.mongo_database]
        await db["applications"].insert_one(
            {"_id": application, "workspace_id": workspace, "name": "benchmark"}
        )
        # The connected channel the codec's messages name: message-process checks it exists.
        await db["channels"].insert_one(
            {"_id": _channel_id(application), "workspace_id": workspace,
             "application_id": application, "type": "telegram", "status": "active"}
        )  # fmt: skip
    finally:
        await client.close()
    return workspace, application


def _start(
    argv: list[str], log: Path, ready: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
    deadline = time.monotonic() + 120
    while ready not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{argv} did not start; see {log}")
        time.sleep(0.2)
    return process


async def _with_responder(
    settings: Settings, source: str, target: str, answer: Callable[[bytes], bytes],
    body: Callable[[], Awaitable[list[Run]]],
) -> list[Run]:  # fmt: skip
    responder = asyncio.create_task(_respond(settings, source, target, answer))
    await asyncio.sleep(3)  # let its consumer join before anything is sent
    try:
        return await body()
    finally:
        responder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await responder


def run(settings: Settings, log_dir: Path) -> list[Run]:
    workspace, application = asyncio.run(_prepare(settings))
    pipeline_codec, raw_codec = _pipeline_codec(workspace, application), _raw_codec()
    python = sys.executable
    worker = _start([python, "-m", "infra.cli", "worker", "--loglevel", "info"],
                    log_dir / "bench-worker.log", "[^Worker]: Ready",
                    # Measured to platform.outbound; bench/channels.py measures the sender.
                    env={"SWITCHBOARD_AI_AGENT_ENABLED": "false",
                         "SWITCHBOARD_PLATFORM_SENDER_ENABLED": "false"})  # fmt: skip
    try:

        async def pipeline() -> list[Run]:
            await _drive(settings, "warm-up", MESSAGES_INBOUND, PLATFORM_OUTBOUND,
                         *pipeline_codec, WARM_UP, None)  # fmt: skip
            burst = await _drive(settings, "pipeline, as fast as it goes", MESSAGES_INBOUND,
                                 PLATFORM_OUTBOUND, *pipeline_codec, BURST, None)  # fmt: skip
            paced = await _drive(settings, f"pipeline, paced at {PACED_RATE:.0f} msg/s",
                                 MESSAGES_INBOUND, PLATFORM_OUTBOUND, *pipeline_codec, PACED,
                                 PACED_RATE)  # fmt: skip
            return [burst, paced]

        results = asyncio.run(
            _with_responder(settings, AGENT_REQUESTS, MESSAGES_OUTBOUND, _answer, pipeline)
        )
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    relays = _start([python, "-m", "bench.relay", f"{RAW_TOPICS[0]}:{RAW_TOPICS[1]}",
                     f"{RAW_TOPICS[2]}:{RAW_TOPICS[3]}"], log_dir / "bench-relay.log",
                    "relay ready")  # fmt: skip
    try:

        async def raw() -> list[Run]:
            await _drive(settings, "warm-up", RAW_TOPICS[0], RAW_TOPICS[3], *raw_codec, WARM_UP,
                         None)  # fmt: skip
            burst = await _drive(settings, "raw relay chain, as fast as it goes", RAW_TOPICS[0],
                                 RAW_TOPICS[3], *raw_codec, BURST, None)  # fmt: skip
            paced = await _drive(settings, f"raw relay chain, paced at {PACED_RATE:.0f} msg/s",
                                 RAW_TOPICS[0], RAW_TOPICS[3], *raw_codec, PACED,
                                 PACED_RATE)  # fmt: skip
            return [burst, paced]

        results += asyncio.run(
            _with_responder(settings, RAW_TOPICS[1], RAW_TOPICS[2], lambda raw: raw, raw)
        )
    finally:
        relays.terminate()
        relays.wait(timeout=60)
    return results


def report(results: list[Run]) -> str:
    baseline = {0: results[2], 1: results[3]}
    lines = [
        f"pipeline benchmark: {CONVERSATIONS} conversations, 1 worker, immediate responder",
        f"{'':40} {'msgs':>5} {'msg/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'msg/s vs raw':>13}",
    ]
    for index, result in enumerate(results):
        ratio = result.per_second / baseline[index % 2].per_second
        lines.append(
            f"{result.name:40} {result.messages:5d} {result.per_second:8.0f} "
            f"{result.p50_ms:8.1f} {result.p99_ms:8.1f} {ratio:13.2f}"
        )
    return "\n".join(lines)
