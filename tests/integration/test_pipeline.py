"""The message pipeline on the real Kafka and MongoDB-wire server, with real worker processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core.database import new_mongo_client
from core.ids import answer_id, new_id, request_id
from core.settings import Settings
from tests.integration.pipeline_harness import (
    Collector,
    Conversation,
    Responder,
    Worker,
    create_application,
    send_all,
)


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[Worker]]:
    started = [Worker(tmp_path, f"worker-{n}") for n in range(2)]
    for worker in started:
        worker.start()
    for worker in started:
        worker.wait_ready()
    yield started
    for worker in started:
        assert worker.stop() in (0, -9), worker.tail()


async def _stored(settings: Settings, conversation_id: str, role: str) -> list[dict[str, object]]:
    client = new_mongo_client(settings)
    try:
        cursor = client[settings.mongo_database]["messages"].find(
            {"conversation_id": conversation_id, "role": role}
        )
        return [doc async for doc in cursor]
    finally:
        await client.close()


async def test_messages_flow_in_order(settings: Settings, workers: list[Worker]) -> None:
    workspace = new_id("ws")
    application = await create_application(settings, workspace)
    conversations = [Conversation(workspace, application, f"chat-{n}") for n in range(20)]
    per_conversation = 5
    sent = {
        c.id: [c.message(f"{n}", f"message {n}") for n in range(per_conversation)]
        for c in conversations
    }
    interleaved = [sent[c.id][n] for n in range(per_conversation) for c in conversations]
    keys = {c.id for c in conversations}
    async with Responder(settings, keys), Collector(settings, keys) as collector:
        await send_all(settings, "messages.inbound", interleaved)
        await collector.wait_for(len(interleaved), within_s=120)

    for conversation in conversations:
        expected = [m.message_id for m in sent[conversation.id]]
        routed = collector.sends[conversation.id]
        assert [s.in_reply_to for s in routed] == expected
        assert [s.message_id for s in routed] == [answer_id(request_id(m)) for m in expected]
        stored = await _stored(settings, conversation.id, "user")
        assert [d["_id"] for d in sorted(stored, key=lambda d: d["seq"])] == expected  # type: ignore[arg-type,return-value]
        answers = await _stored(settings, conversation.id, "bot")
        assert {d["status"] for d in answers} == {"routed"}
        assert len(answers) == per_conversation
