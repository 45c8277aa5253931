"""The AI stage against a fake model: answers per second and p99, next to the ideal.

One worker with its AI stage on; the chatbot points at a local fake OpenAI-compatible server
that answers after a fixed latency. 200 conversations are in flight at once, each in a closed
loop: as soon as its answer arrives it asks the next question, the way 200 people chatting
would. The ideal is concurrency ÷ latency, what a stage that only waits on the model could do.

Two paths are measured. "AI stage" feeds agent.requests and reads messages.outbound: the stage
the figure is about (the worker's other agents still run beside it). "end to end" feeds
messages.inbound and reads platform.outbound: message-process, the AI stage and delivery
together, for context. At 0 ms there is no ideal: the figure is what the stage itself costs.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.pipeline import Run, _start
from core import ids
from core.clients.database import new_mongo_client
from core.settings import Settings
from streams.contract import AGENT_REQUESTS, MESSAGES_INBOUND, MESSAGES_OUTBOUND, PLATFORM_OUTBOUND
from streams.records import AgentRequest, InboundMessage, decode, encode
from tests.fakes.llm import FakeLLM

CONVERSATIONS = 200
TURNS = 8  # questions each conversation asks in a measured run
WARM_UP_TURNS = 2
#: (workers, path, model latency): one worker as the headline; two, one per core, for scale.
PLANS = ((1, "AI stage", 0.0), (1, "AI stage", 0.5), (1, "end to end", 0.5), (2, "AI stage", 0.5))
#: The benchmark's own database, emptied before the first run (as bench.socket does).
DATABASE = "switchboard_bench_ai"


@dataclass(frozen=True)
class AIRun:
    workers: int
    path: str
    latency_s: float
    run: Run

    @property
    def ideal(self) -> float | None:
        return CONVERSATIONS / self.latency_s if self.latency_s else None


@dataclass(frozen=True)
class Route:
    """Where questions go in and answers come out, and how to make and recognise them."""

    source: str
    sink: str
    question: Callable[[int, str], tuple[str, bytes]]  # (conversation, message id) -> key, value
    answered: Callable[[bytes], str]  # an answer's bytes -> the message id it answers


async def _tenant(settings: Settings, llm: FakeLLM) -> tuple[str, str]:
    workspace, application = ids.new_id("ws"), ids.new_id("app")
    chatbot = {"llm": {"base_url": llm.base_url, "api_key": "test-key", "model": "fake-model"}}
    client = new_mongo_client(settings)
    try:
        db = client[settings.mongo_database]
        await db["applications"].insert_one(
            {"_id": application, "workspace_id": workspace, "name": "benchmark",
             "prompt": "Be brief.", "chatbot": chatbot}
        )  # fmt: skip
        await db["channels"].insert_one(
            {"_id": f"ch_{application}", "workspace_id": workspace, "application_id": application,
             "type": "telegram", "status": "active"}
        )  # fmt: skip
    finally:
        await client.close()
    return workspace, application


async def _empty(settings: Settings) -> None:
    client = new_mongo_client(settings)
    try:
        await client.drop_database(settings.mongo_database)
    finally:
        await client.close()


def _route(path: str, workspace: str, application: str) -> Route:
    channel_id = f"ch_{application}"

    def envelope(conversation: int, message_id: str) -> dict[str, Any]:
        chat = f"bench-ai-{conversation}"
        return {
            "message_id": message_id,
            "conversation_id": ids.conversation_id("telegram", channel_id, chat),
            "workspace_id": workspace, "application_id": application, "channel": "telegram",
            "channel_id": channel_id, "chat_id": chat, "created_at": time.time(),
        }  # fmt: skip

    if path == "AI stage":

        def request(conversation: int, message_id: str) -> tuple[str, bytes]:
            fields = envelope(conversation, message_id)
            record = AgentRequest(
                **fields, request_id=ids.request_id(message_id), text="hello", context=[]
            )
            return str(fields["conversation_id"]), encode(record)

        return Route(AGENT_REQUESTS, MESSAGES_OUTBOUND, request, _in_reply_to)

    def message(conversation: int, message_id: str) -> tuple[str, bytes]:
        fields = envelope(conversation, message_id)
        return str(fields["conversation_id"]), encode(InboundMessage(**fields, text="hello"))

    return Route(MESSAGES_INBOUND, PLATFORM_OUTBOUND, message, _in_reply_to)


def _in_reply_to(raw: bytes) -> str:
    return str(getattr(decode(raw), "in_reply_to", ""))


async def _closed_loop(settings: Settings, name: str, route: Route, turns: int) -> Run:
    """Every conversation asks, waits for its answer, asks again, ``turns`` times."""
    consumer = AIOKafkaConsumer(
        route.sink, bootstrap_servers=settings.kafka_bootstrap,
        group_id=f"bench-ai-{uuid.uuid4().hex[:8]}", auto_offset_reset="latest",
    )  # fmt: skip
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=2)
    await consumer.start()
    await producer.start()
    while not consumer.assignment():
        await consumer.getmany(timeout_ms=200)
    await consumer.seek_to_end()
    run_id = uuid.uuid4().hex[:8]
    waiting: dict[str, tuple[int, int, float]] = {}  # message id -> conversation, turn, sent at
    latencies: list[float] = []

    async def ask(conversation: int, turn: int) -> None:
        message_id = f"bench-{run_id}-{conversation}-{turn}"
        key, value = route.question(conversation, message_id)
        waiting[message_id] = (conversation, turn, time.perf_counter())
        await producer.send(route.source, key=key.encode(), value=value)

    began = time.perf_counter()
    try:
        for conversation in range(CONVERSATIONS):
            await ask(conversation, 0)
        deadline = time.monotonic() + 600
        while waiting and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            now = time.perf_counter()
            for records in batch.values():
                for record in records:
                    found = waiting.pop(route.answered(record.value), None)
                    if found is None:
                        continue
                    conversation, turn, sent = found
                    latencies.append((now - sent) * 1000)
                    if turn + 1 < turns:
                        await ask(conversation, turn + 1)
        ended = time.perf_counter()
    finally:
        await producer.stop()
        await consumer.stop()
    if waiting:
        raise RuntimeError(f"{name}: {len(waiting)} question(s) never answered")
    latencies.sort()
    return Run(
        name,
        len(latencies),
        len(latencies) / (ended - began),
        statistics.median(latencies),
        latencies[int(len(latencies) * 0.99) - 1],
    )


async def _measure(settings: Settings, workers: int, path: str, latency_s: float) -> AIRun:
    async with FakeLLM() as llm:
        llm.latency_s = latency_s
        workspace, application = await _tenant(settings, llm)
        route = _route(path, workspace, application)
        await _closed_loop(settings, "warm-up", route, WARM_UP_TURNS)
        name = f"{path}, model {latency_s * 1000:.0f} ms, {workers} worker{'s' * (workers > 1)}"
        return AIRun(workers, path, latency_s, await _closed_loop(settings, name, route, TURNS))


def run(settings: Settings, log_dir: Path) -> list[AIRun]:
    settings = settings.model_copy(update={"mongo_database": DATABASE})
    asyncio.run(_empty(settings))
    results = []
    for count in sorted({workers for workers, _, _ in PLANS}):
        workers = [
            _start(
                [sys.executable, "-m", "infra.cli", "worker", "--loglevel", "info"],
                log_dir / f"bench-ai-worker-{count}-{n}.log",
                "[^Worker]: Ready",
                env={
                    "SWITCHBOARD_AI_AGENT_ENABLED": "true",
                    # Answers are counted on platform.outbound; bench/channels.py measures sends.
                    "SWITCHBOARD_PLATFORM_SENDER_ENABLED": "false",
                    "SWITCHBOARD_MONGO_DATABASE": DATABASE,
                    # The fake model is on loopback, where a tenant's model URL needs leave.
                    "SWITCHBOARD_LLM_ALLOW_NETWORKS": "127.0.0.1/32",
                },
            )
            for n in range(count)
        ]
        try:
            time.sleep(10)  # let the group settle on every worker before measuring
            results += [
                asyncio.run(_measure(settings, count, path, latency))
                for workers_wanted, path, latency in PLANS
                if workers_wanted == count
            ]
        finally:
            for worker in workers:
                worker.terminate()
            for worker in workers:
                worker.wait(timeout=60)
    return results


def report(results: list[AIRun]) -> str:
    lines = [
        f"AI stage benchmark: {CONVERSATIONS} conversations in a closed loop, {TURNS} turns each",
        f"{'':44} {'answers':>8} {'ans/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'ideal/s':>8} "
        f"{'of ideal':>9}",
    ]
    for result in results:
        run = result.run
        ideal = result.ideal
        lines.append(
            f"{run.name:44} {run.messages:8d} {run.per_second:8.0f} {run.p50_ms:8.1f} "
            f"{run.p99_ms:8.1f} {ideal or float('nan'):8.0f} "
            f"{(run.per_second / ideal if ideal else float('nan')):9.2f}"
        )
    return "\n".join(lines)
