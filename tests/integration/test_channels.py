"""The channel check of message-process, on the real Kafka, MongoDB-wire server and Redis.

A message is taken only on a connected channel of its own application and of its type; any
other is dead-lettered with the reason, stores nothing, and does not hold back the messages
behind it in its partition.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from core.cached.channel_directory import CACHED_FIELDS, ChannelDirectory, cache_key
from core.clients.cache import new_redis
from core.clients.database import Document, database, new_mongo_client
from core.ids import new_id
from core.settings import Settings
from streams.contract import MESSAGES_INBOUND, dead_letter_of
from streams.records import InboundMessage
from tests.integration.pipeline_harness import (
    Collector,
    Conversation,
    Responder,
    Worker,
    create_application,
    documents,
    insert_documents,
    platform_channel_id,
    read_topic,
    send_all,
)


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    started = Worker(tmp_path_factory.mktemp("workers"), "channels-worker")
    started.start()
    try:
        started.wait_ready()
    except BaseException:
        started.stop()
        raise
    yield started
    assert started.stop() in (0, -9), started.tail()


def _behind(message: InboundMessage, conversation: Conversation) -> InboundMessage:
    """``message`` keyed as ``conversation``: in its partition, in front of its next message."""
    return InboundMessage(**{**message.asdict(), "conversation_id": conversation.id})


def _channel(workspace: str, application: str, **fields: Any) -> Document:
    return {
        "_id": new_id("ch"),
        "workspace_id": workspace,
        "application_id": application,
        "type": "telegram",
        "status": "active",
        **fields,
    }


async def _letters(settings: Settings, key: str, want: int) -> dict[str, dict[str, Any]]:
    """The dead letters keyed ``key``, by the message id of the record each carries."""
    found = await read_topic(
        settings, dead_letter_of(MESSAGES_INBOUND), {key}, within_s=30, want=want
    )
    letters = [json.loads(record.value) for record in found]
    return {json.loads(letter["value"])["message_id"]: letter for letter in letters}


async def _stored_ids(settings: Settings, workspace: str, collection: str) -> set[str]:
    return {doc["_id"] for doc in await documents(settings, collection, workspace)}


async def _wait_stored(settings: Settings, workspace: str, message_id: str) -> None:
    deadline = time.monotonic() + 60
    while message_id not in await _stored_ids(settings, workspace, "messages"):
        assert time.monotonic() < deadline, f"message {message_id} was not stored"
        await asyncio.sleep(0.25)


async def test_messages_on_channels_they_may_not_use_are_dead_lettered(
    settings: Settings, worker: Worker
) -> None:
    workspace, other_workspace = new_id("ws"), new_id("ws")
    application = await create_application(settings, workspace)
    sibling = await create_application(settings, workspace)  # another application, same tenant
    stranger = await create_application(settings, other_workspace)
    disconnected = _channel(workspace, application, status="disconnected")
    await insert_documents(settings, "channels", disconnected)
    good = Conversation(workspace, application, "good")

    def on(chat: str, **fields: Any) -> InboundMessage:
        return _behind(
            Conversation(workspace, application, chat, **fields).message("1", "hi"), good
        )

    unknown_id = new_id("ch")
    refused = {
        "unknown": on("unknown", channel_id=unknown_id),
        "another workspace's": on("stranger", channel_id=platform_channel_id(stranger)),
        "another application's": on("sibling", channel_id=platform_channel_id(sibling)),
        "another type's": on("wrong-type", channel="messenger"),
        "disconnected": on("disconnected", channel_id=disconnected["_id"]),
    }
    keys = {good.id}
    async with Responder(settings, keys), Collector(settings, keys) as collector:
        await send_all(
            settings,
            MESSAGES_INBOUND,
            [good.message("1", "before"), *refused.values(), good.message("2", "after")],
        )
        await collector.wait_for(2, within_s=60)
    assert [s.text for s in collector.sends[good.id]] == ["echo: before", "echo: after"]

    letters = await _letters(settings, good.id, want=len(refused))
    reasons = {case: letters[message.message_id] for case, message in refused.items()}
    assert {case: letter["error_type"] for case, letter in reasons.items()} == {
        "unknown": "UnknownChannel",
        "another workspace's": "UnknownChannel",
        "another application's": "UnknownChannel",
        "another type's": "UnknownChannel",
        "disconnected": "ChannelDisconnected",
    }
    assert reasons["unknown"]["reason"] == f"telegram channel {unknown_id!r} does not exist"
    # Another tenant's channel gets the missing one's answer: nothing about it is told.
    stranger_channel = platform_channel_id(stranger)
    assert reasons["another workspace's"]["reason"] == (
        f"telegram channel {stranger_channel!r} does not exist"
    )
    assert reasons["another type's"]["reason"] == (
        f"messenger channel {platform_channel_id(application)!r} does not exist"
    )
    assert reasons["disconnected"]["reason"] == (
        f"telegram channel {disconnected['_id']!r} is not connected (status 'disconnected')"
    )
    assert {letter["attempts"] for letter in letters.values()} == {1}, "a refusal is not retried"

    stored = await _stored_ids(settings, workspace, "messages")
    assert not stored & {m.message_id for m in refused.values()}
    assert await _stored_ids(settings, workspace, "conversations") == {good.id}
    assert await documents(settings, "messages", other_workspace) == []


async def test_a_web_message_must_name_its_application_as_its_channel(
    settings: Settings, worker: Worker
) -> None:
    workspace = new_id("ws")
    application = await create_application(settings, workspace)
    sibling = await create_application(settings, workspace)
    visitor = Conversation(workspace, application, "visitor", channel="web")
    elsewhere = Conversation(workspace, application, "forged", channel="web", channel_id=sibling)
    forged = _behind(elsewhere.message("1", "hi"), visitor)
    good = visitor.message("1", "hello from the widget")
    await send_all(settings, MESSAGES_INBOUND, [forged, good])
    await _wait_stored(settings, workspace, good.message_id)

    letters = await _letters(settings, visitor.id, want=1)
    assert list(letters) == [forged.message_id]
    letter = letters[forged.message_id]
    assert letter["error_type"] == "UnknownChannel"
    assert letter["reason"] == (
        f"web channel {sibling!r} does not exist: the widget's channel is its application"
    )
    assert await _stored_ids(settings, workspace, "messages") == {good.message_id}


async def test_the_cache_holds_no_credentials_and_a_disconnect_applies_once_invalidated(
    settings: Settings, worker: Worker
) -> None:
    workspace = new_id("ws")
    application = await create_application(settings, workspace)
    channel = _channel(
        workspace,
        application,
        credentials={"bot_token": "123456:sealed"},
        webhook_secret="not-for-the-cache",
    )
    await insert_documents(settings, "channels", channel)
    conversation = Conversation(workspace, application, "cached", channel_id=channel["_id"])
    first = conversation.message("1", "while connected")
    await send_all(settings, MESSAGES_INBOUND, [first])
    await _wait_stored(settings, workspace, first.message_id)

    redis = new_redis(settings)
    mongo = new_mongo_client(settings)
    try:
        cached = json.loads(await redis.get(cache_key(channel["_id"])) or b"null")
        assert cached == {key: channel[key] for key in CACHED_FIELDS}
        # What the bots service does when a channel is disconnected.
        await database(mongo, settings)["channels"].update_one(
            {"_id": channel["_id"]}, {"$set": {"status": "disconnected"}}
        )
        await ChannelDirectory(database(mongo, settings), redis).invalidate(channel["_id"])
    finally:
        await redis.aclose()
        await mongo.close()

    after = conversation.message("2", "after the disconnect")
    await send_all(settings, MESSAGES_INBOUND, [after])
    letters = await _letters(settings, conversation.id, want=1)
    assert [letter["error_type"] for letter in letters.values()] == ["ChannelDisconnected"]
    assert list(letters) == [after.message_id]
    assert await _stored_ids(settings, workspace, "messages") == {first.message_id}
