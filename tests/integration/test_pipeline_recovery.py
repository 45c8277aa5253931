"""Worker operations: a worker's table state survives a restart (the crash test is in
tests/stress)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from core.ids import new_id
from core.settings import Settings
from streams.contract import CONVERSATION_COMMANDS, MESSAGES_INBOUND
from tests.integration.pipeline_harness import (
    Collector,
    Conversation,
    Responder,
    Worker,
    create_application,
    documents,
    send_all,
    wait_for_event,
)


async def test_state_survives_a_restart(settings: Settings, tmp_path: Path) -> None:
    workspace = new_id("ws")
    application = await create_application(settings, workspace)
    conversation = Conversation(workspace, application, "restart")
    keys = {conversation.id}
    worker = Worker(tmp_path, "worker")
    try:
        worker.start()
        worker.wait_ready()
        async with Responder(settings, keys) as responder, Collector(settings, keys) as collector:
            await send_all(settings, MESSAGES_INBOUND, [conversation.message("1", "one")])
            await collector.wait_for(1, within_s=60)
            await send_all(settings, CONVERSATION_COMMANDS, [conversation.command("takeover")])
            await wait_for_event(settings, conversation.id, "mode.changed", 1)

            assert await asyncio.to_thread(worker.stop) == 0, worker.tail()
            ready_before = worker.ready_count()
            worker.start()
            await asyncio.to_thread(worker.wait_ready, ready_before)

            # Still in human mode after the restart: this message must not reach the bot.
            await send_all(settings, MESSAGES_INBOUND, [conversation.message("2", "two")])
            await send_all(settings, CONVERSATION_COMMANDS, [conversation.command("release")])
            await wait_for_event(settings, conversation.id, "mode.changed", 2)
            await send_all(settings, MESSAGES_INBOUND, [conversation.message("3", "three")])
            await collector.wait_for(2, within_s=60)
    finally:
        assert await asyncio.to_thread(worker.stop) == 0, worker.tail()

    assert [r.text for r in responder.requests.values()] == ["one", "three"]
    assert [s.text for s in collector.sends[conversation.id]] == ["echo: one", "echo: three"]
    users = sorted(
        (d for d in await documents(settings, "messages", workspace) if d["role"] == "user"),
        key=lambda d: d["seq"],
    )
    # The inbound counter was recovered from the changelog: numbering goes on where it was.
    assert [(d["text"], d["seq"]) for d in users] == [("one", 1), ("two", 2), ("three", 3)]
    # The context window was recovered too: the last request saw all three turns.
    last = list(responder.requests.values())[-1]
    assert [turn["text"] for turn in last.context or []] == ["one", "two", "three"]
