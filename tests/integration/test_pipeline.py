"""The message pipeline on the real Kafka and MongoDB-wire server, with real worker processes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest

from core.clients.cache import new_redis
from core.clients.database import new_mongo_client
from core.ids import answer_id, new_id, request_id
from core.settings import Settings
from streams.contract import (
    AGENT_REQUESTS,
    CONVERSATION_COMMANDS,
    CONVERSATION_EVENTS,
    MESSAGES_INBOUND,
    MESSAGES_OUTBOUND,
    PLATFORM_OUTBOUND,
    dead_letter_of,
)
from streams.replay import conversation_records, redrive
from tests.integration.pipeline_harness import (
    Collector,
    Conversation,
    Responder,
    Worker,
    create_application,
    read_topic,
    send_all,
    send_raw,
    wait_for_event,
)


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Worker]]:
    """Two workers shared by this module's tests, as `make run` with two workers would run."""
    log_dir = tmp_path_factory.mktemp("workers")
    started = [Worker(log_dir, f"worker-{n}") for n in range(2)]
    for worker in started:
        worker.start()
    try:
        for worker in started:
            worker.wait_ready()
    except BaseException:
        for worker in started:
            worker.stop()
        raise
    yield started
    for worker in started:
        assert worker.stop() in (0, -9), worker.tail()


async def _stored(
    settings: Settings, workspace_id: str, collection: str = "messages"
) -> dict[str, list[dict[str, Any]]]:
    """A workspace's documents by conversation id, read in one query."""
    client = new_mongo_client(settings)
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    try:
        async for doc in client[settings.mongo_database][collection].find(
            {"workspace_id": workspace_id}
        ):
            found[doc["conversation_id"]].append(doc)
    finally:
        await client.close()
    return found


def _by_role(docs: list[dict[str, Any]], role: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["role"] == role]


async def test_messages_flow_in_order(settings: Settings, workers: list[Worker]) -> None:
    workspace = new_id("ws")
    application = await create_application(settings, workspace)
    conversations = [
        Conversation(workspace, application, f"chat-{n}")
        for n in range(int(os.environ.get("SB_CONV", "200")))
    ]
    per_conversation = 20
    sent = {
        c.id: [c.message(f"{n}", f"message {n}") for n in range(per_conversation)]
        for c in conversations
    }
    interleaved = [sent[c.id][n] for n in range(per_conversation) for c in conversations]
    keys = {c.id for c in conversations}
    async with Responder(settings, keys), Collector(settings, keys) as collector:
        await send_all(settings, MESSAGES_INBOUND, interleaved)
        began = time.monotonic()
        await collector.wait_for(len(interleaved), within_s=300)
        print(f"pipeline: {len(interleaved)} messages answered in {time.monotonic() - began:.1f}s")
    messages = await _stored(settings, workspace)
    for conversation in conversations:
        expected = [m.message_id for m in sent[conversation.id]]
        routed = collector.sends[conversation.id]
        assert [s.in_reply_to for s in routed] == expected
        assert [s.message_id for s in routed] == [answer_id(request_id(m)) for m in expected]
        stored = _by_role(messages[conversation.id], "user")
        assert [d["_id"] for d in sorted(stored, key=lambda d: d["seq"])] == expected
        answers = _by_role(messages[conversation.id], "bot")
        assert sorted(d["_id"] for d in answers) == sorted(s.message_id for s in routed)
        assert {d["status"] for d in answers} == {"routed"}


async def test_poison_record_is_dead_lettered_and_the_rest_flows(
    settings: Settings, workers: list[Worker]
) -> None:
    workspace = new_id("ws")
    application = await create_application(settings, workspace)
    conversation = Conversation(workspace, application, "poisoned")
    keys = {conversation.id}
    async with Responder(settings, keys), Collector(settings, keys) as collector:
        await send_all(settings, MESSAGES_INBOUND, [conversation.message("1", "before")])
        await send_raw(settings, MESSAGES_INBOUND, conversation.id, b"\x00not json{")
        await send_all(settings, MESSAGES_INBOUND, [conversation.message("2", "after")])
        await collector.wait_for(2, within_s=60)

    assert [s.text for s in collector.sends[conversation.id]] == ["echo: before", "echo: after"]
    letters = await read_topic(
        settings, dead_letter_of(MESSAGES_INBOUND), keys, within_s=30, want=1
    )
    assert len(letters) == 1
    letter = json.loads(letters[0].value)
    assert letter["key"] == conversation.id
    assert letter["source_topic"] == MESSAGES_INBOUND
    assert letter["error_type"] == "UndecodableRecord"
    assert letter["reason"].startswith("not JSON")
    assert letter["attempts"] == 1
    assert letter["offset"] >= 0
    assert letter["value"].endswith("not json{")


async def test_unknown_application_is_dead_lettered(
    settings: Settings, workers: list[Worker]
) -> None:
    conversation = Conversation(new_id("ws"), new_id("app"), "nobody")
    await send_all(settings, MESSAGES_INBOUND, [conversation.message("1", "hello?")])
    letters = await read_topic(
        settings, dead_letter_of(MESSAGES_INBOUND), {conversation.id}, 30, want=1
    )
    assert [json.loads(r.value)["error_type"] for r in letters] == ["UnknownApplication"]
    assert await _stored(settings, conversation.workspace_id) == {}


async def test_takeover_racing_a_bot_answer_suppresses_it(
    settings: Settings, workers: list[Worker]
) -> None:
    workspace = new_id("ws")
    application = await create_application(settings, workspace)
    conversation = Conversation(workspace, application, "takeover")
    keys = {conversation.id}
    first = conversation.message("1", "hello bot")
    # The bot takes 3 s to answer; the operator takes over meanwhile.
    async with (
        Responder(settings, keys, delay_s=3.0) as responder,
        Collector(settings, keys) as collector,
    ):
        await send_all(settings, MESSAGES_INBOUND, [first])
        await asyncio.wait_for(responder.got_request.wait(), timeout=60)
        takeover = conversation.command("takeover")
        await send_all(settings, CONVERSATION_COMMANDS, [takeover])
        # Once the takeover is applied (operators see it in their feed), the user writes again.
        await wait_for_event(settings, conversation.id, "mode.changed", 1)
        await send_all(settings, MESSAGES_INBOUND, [conversation.message("2", "still there?")])
        reply = conversation.command("reply", text="Hi, a human here.")
        await send_all(settings, CONVERSATION_COMMANDS, [reply])
        await collector.wait_for(1, within_s=60)
        await asyncio.sleep(5)  # the late bot answer has had time to arrive, and must not

    routed = collector.sends[conversation.id]
    assert [(s.sender_role, s.text) for s in routed] == [("operator", "Hi, a human here.")]
    assert len(responder.requests) == 1, "a message in human mode must not reach the bot"
    answers = _by_role((await _stored(settings, workspace))[conversation.id], "bot")
    assert [(d["_id"], d["status"]) for d in answers] == [
        (answer_id(request_id(first.message_id)), "suppressed")
    ]
    # conversation.created, 2 x message.created (user), mode.changed (takeover),
    # mode.changed (reply), message.created (the reply, delivered), message.suppressed
    events = await read_topic(settings, CONVERSATION_EVENTS, keys, within_s=30, want=7)
    kinds = [json.loads(r.value)["type"] for r in events]
    assert "message.suppressed" in kinds
    assert kinds.count("mode.changed") == 2  # the takeover, and the reply (already human)


async def test_web_answers_are_pushed_through_socketio_redis(
    settings: Settings, workers: list[Worker]
) -> None:
    workspace = new_id("ws")
    application = await create_application(settings, workspace)
    conversation = Conversation(workspace, application, "visitor-1", channel="web")
    message = conversation.message("client-1", "hi from the widget")
    redis = new_redis(settings)
    pubsub = redis.pubsub()
    await pubsub.subscribe("socketio")  # the channel socket.io's AsyncRedisManager listens on
    try:
        async with Responder(settings, {conversation.id}):
            await send_all(settings, MESSAGES_INBOUND, [message])
            push = None
            async with asyncio.timeout(60):
                while push is None:
                    raw = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                    if raw and f"conversation:{conversation.id}" in raw["data"].decode():
                        candidate = json.loads(raw["data"])
                        # A socket service (if one runs) also feeds operators through here.
                        if candidate.get("namespace") == "/widget":
                            push = candidate
    finally:
        await pubsub.aclose()
        await redis.aclose()
    assert push["method"] == "emit"
    assert push["event"] == "message"
    assert push["namespace"] == "/widget"
    assert push["room"] == f"conversation:{conversation.id}"
    payload = push["data"][0]  # socket.io carries the event's arguments as a list
    assert payload["id"] == answer_id(request_id(message.message_id))
    assert payload["text"] == "echo: hi from the widget"
    answers = _by_role((await _stored(settings, workspace))[conversation.id], "bot")
    assert [d["status"] for d in answers] == ["delivered"]


def _switchboard(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "infra.cli", *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_replay_shows_a_conversation_across_topics(
    settings: Settings, workers: list[Worker]
) -> None:
    workspace = new_id("ws")
    application = await create_application(settings, workspace)
    conversation = Conversation(workspace, application, "replayed")
    async with (
        Responder(settings, {conversation.id}),
        Collector(settings, {conversation.id}) as collector,
    ):
        await send_all(settings, MESSAGES_INBOUND, [conversation.message("1", "replay me")])
        await collector.wait_for(1, within_s=60)

    lines = await asyncio.to_thread(_switchboard, "replay", "show", conversation.id, "--json")
    records = [json.loads(line) for line in lines.splitlines()]
    assert {r["key"] for r in records} == {conversation.id}
    kinds = [(r["topic"], r["kind"]) for r in records]
    flow = [k for k in kinds if k[0] != CONVERSATION_EVENTS]
    assert flow == [
        (MESSAGES_INBOUND, "InboundMessage"),
        (AGENT_REQUESTS, "AgentRequest"),
        (MESSAGES_OUTBOUND, "OutboundMessage"),
        (PLATFORM_OUTBOUND, "PlatformSend"),
    ]
    assert [r["timestamp"] for r in records] == sorted(r["timestamp"] for r in records)
    assert {r["value"]["type"] for r in records if r["topic"] == CONVERSATION_EVENTS} == {
        "conversation.created",
        "message.created",
    }

    text = await asyncio.to_thread(
        _switchboard, "replay", "show", conversation.id, "--topic", MESSAGES_INBOUND
    )
    assert len(text.splitlines()) == 1
    assert "InboundMessage" in text
    assert "'replay me'" in text


async def test_redrive_puts_dead_letters_back(settings: Settings, workers: list[Worker]) -> None:
    workspace, application = new_id("ws"), new_id("app")
    conversation = Conversation(workspace, application, "redriven")
    keys = {conversation.id}
    async with Responder(settings, keys), Collector(settings, keys) as collector:
        # The application does not exist yet: the message is dead-lettered.
        await send_all(settings, MESSAGES_INBOUND, [conversation.message("1", "try again")])
        assert await read_topic(
            settings, dead_letter_of(MESSAGES_INBOUND), keys, within_s=30, want=1
        )
        # Once it exists, re-driving the dead letters gets the message answered.
        await create_application(settings, workspace, application)
        output = await asyncio.to_thread(
            _switchboard, "replay", "redrive", dead_letter_of(MESSAGES_INBOUND)
        )
        assert output.startswith("re-drove ")
        await collector.wait_for(1, within_s=60)
    assert [s.text for s in collector.sends[conversation.id]] == ["echo: try again"]
    # The group remembers how far it got: this letter is not offered a second time.
    pending = await redrive(settings, dead_letter_of(MESSAGES_INBOUND), dry_run=True)
    assert conversation.id not in {letter.key for letter in pending}


async def test_refeed_replays_a_conversation_into_a_sandbox_that_sends_nothing(
    settings: Settings, workers: list[Worker]
) -> None:
    workspace = new_id("ws")
    application = await create_application(settings, workspace)
    conversation = Conversation(workspace, application, "refed")
    sent = [conversation.message("1", "first"), conversation.message("2", "second")]
    async with (
        Responder(settings, {conversation.id}),
        Collector(settings, {conversation.id}) as collector,
    ):
        await send_all(settings, MESSAGES_INBOUND, sent)
        await collector.wait_for(2, within_s=60)

    output = await asyncio.to_thread(
        _switchboard, "replay", "refeed", conversation.id, "--sandbox", "prompt-v2"
    )
    assert output.startswith("re-fed 2 message(s) into sandbox prompt-v2")
    sandbox_id = output.split()[-1]
    assert sandbox_id != conversation.id
    async with Responder(settings, {sandbox_id}) as responder:
        answers: list[dict[str, Any]] = []
        deadline = time.monotonic() + 60
        while len(answers) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            answers = _by_role((await _stored(settings, workspace)).get(sandbox_id, []), "bot")
        # The same sandbox again: the copies have the same ids, so they are redeliveries.
        await asyncio.to_thread(
            _switchboard, "replay", "refeed", conversation.id, "--sandbox", "prompt-v2"
        )
        requests: list[Any] = []
        while len(requests) < 4 and time.monotonic() < deadline + 30:
            await asyncio.sleep(0.5)
            requests = await conversation_records(settings, sandbox_id, topics=[AGENT_REQUESTS])
        assert len(requests) == 4, "the second re-feed was processed"
        assert len(responder.requests) == 2

    stored = (await _stored(settings, workspace))[sandbox_id]
    users = sorted(_by_role(stored, "user"), key=lambda d: d["seq"])
    assert [d["text"] for d in users] == ["first", "second"]
    assert all(d["_id"].startswith("sbx_") and d["channel"] == "sandbox" for d in users)
    assert [d["external_id"] for d in users] == [m.message_id for m in sent]
    answers = _by_role(stored, "bot")
    assert sorted(d["text"] for d in answers) == ["echo: first", "echo: second"]
    assert {d["status"] for d in answers} == {"sandboxed"}
    assert await conversation_records(settings, sandbox_id, topics=[PLATFORM_OUTBOUND]) == []
    assert len(await conversation_records(settings, sandbox_id, topics=[MESSAGES_OUTBOUND])) == 2
