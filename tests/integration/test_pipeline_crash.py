"""A worker killed mid-stream loses nothing and duplicates nothing."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from pathlib import Path

from core.ids import new_id
from core.settings import Settings
from tests.integration.pipeline_harness import (
    Collector,
    Conversation,
    Responder,
    Worker,
    create_application,
    documents,
    send_all,
)


async def test_killed_worker_loses_and_duplicates_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    workspace = new_id("ws")
    application = await create_application(settings, workspace)
    conversations = [Conversation(workspace, application, f"crash-{n}") for n in range(200)]
    per_conversation = 20
    sent = {c.id: [c.message(f"{n}", f"m{n}") for n in range(per_conversation)]
            for c in conversations}  # fmt: skip
    interleaved = [sent[c.id][n] for n in range(per_conversation) for c in conversations]
    keys = {c.id for c in conversations}
    survivor, victim = Worker(tmp_path, "survivor"), Worker(tmp_path, "victim")
    rng = random.Random()
    try:
        for worker in (survivor, victim):
            worker.start()
        for worker in (survivor, victim):
            worker.wait_ready()
        async with Responder(settings, keys), Collector(settings, keys) as collector:
            await send_all(settings, "messages.inbound", interleaved)
            for _ in range(3):
                await asyncio.sleep(rng.uniform(1.0, 6.0))
                victim.kill()
                await asyncio.sleep(rng.uniform(0.5, 3.0))
                victim.start()
            await collector.wait_for(len(interleaved), within_s=400)
            await asyncio.sleep(3)  # let any redelivered duplicate surface before counting
    finally:
        for worker in (survivor, victim):
            worker.stop()

    stored_documents = await documents(settings, "messages", workspace)
    stored = Counter(d["_id"] for d in stored_documents)
    answers = [d for d in stored_documents if d["role"] == "bot"]
    routed = Counter(s.message_id for sends in collector.sends.values() for s in sends)
    for conversation in conversations:
        for message in sent[conversation.id]:
            assert stored[message.message_id] == 1
    assert len(answers) == len(interleaved)
    assert {d["status"] for d in answers} == {"routed"}
    assert len(routed) == len(interleaved)
    # platform.outbound is at-least-once: a kill between the broker's ack of a batch's sends and
    # its delivery marks (a Redis round trip) re-sends that batch's answers, under the same
    # ids, for the platform sender to drop. The window is tiny and no run here has hit it;
    # more than a few re-sends would mean the marks are not doing their job.
    resent = sum(n - 1 for n in routed.values())
    assert resent <= 3, f"{resent} answers re-sent after 3 kills"
    for conversation in conversations:
        first_seen = list(dict.fromkeys(s.in_reply_to for s in collector.sends[conversation.id]))
        assert first_seen == [m.message_id for m in sent[conversation.id]]
