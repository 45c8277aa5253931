from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from core.cached.applications import CACHE_TTL_S
from core.cached.channel_directory import (
    ChannelDirectory,
    ChannelDisconnected,
    UnknownChannel,
    cache_key,
    check,
    summary,
)
from core.clients.database import Document
from core.errors import NotFound, ValidationFailed
from streams.contract import SANDBOX_CHANNEL
from streams.records import InboundMessage

CHANNEL: Document = {
    "_id": "ch_1",
    "workspace_id": "w1",
    "application_id": "a1",
    "type": "telegram",
    "status": "active",
    "credentials": {"bot_token": "123:secret"},
    "webhook_secret": "hook-secret",
}


def _message(**fields: Any) -> InboundMessage:
    envelope = {
        "message_id": "m1",
        "conversation_id": "c1",
        "workspace_id": "w1",
        "application_id": "a1",
        "channel": "telegram",
        "channel_id": "ch_1",
    }
    return InboundMessage(**{**envelope, **fields}, text="hi")


def test_a_connected_channel_of_the_records_application_and_type_passes() -> None:
    assert check(_message(), CHANNEL) is CHANNEL


@pytest.mark.parametrize(
    "channel",
    [
        None,
        {**CHANNEL, "workspace_id": "w2"},
        {**CHANNEL, "application_id": "a2"},
        {**CHANNEL, "type": "messenger"},
        {key: value for key, value in CHANNEL.items() if key != "type"},
        # Another tenant's channel is unknown whatever its status: nothing about it leaks.
        {**CHANNEL, "workspace_id": "w2", "status": "disconnected"},
    ],
)
def test_another_tenants_or_types_channel_is_as_unknown_as_a_missing_one(
    channel: Document | None,
) -> None:
    with pytest.raises(UnknownChannel) as refused:
        check(_message(), channel)
    assert str(refused.value) == "telegram channel 'ch_1' does not exist"
    assert isinstance(refused.value, NotFound)


@pytest.mark.parametrize("status", ["disconnected", "pending", None])
def test_a_channel_that_is_not_active_refuses(status: str | None) -> None:
    with pytest.raises(ChannelDisconnected, match="'ch_1' is not connected") as refused:
        check(_message(), {**CHANNEL, "status": status})
    assert isinstance(refused.value, ValidationFailed)


def test_the_summary_keeps_no_credentials() -> None:
    assert summary(CHANNEL) == {
        "_id": "ch_1",
        "workspace_id": "w1",
        "application_id": "a1",
        "type": "telegram",
        "status": "active",
    }


@dataclass
class Cache:
    """Redis's get, set and delete, on a dict."""

    values: dict[str, bytes] = field(default_factory=dict)
    ttls: dict[str, int] = field(default_factory=dict)

    async def get(self, key: str) -> bytes | None:
        return self.values.get(key)

    async def set(self, key: str, value: str, ex: int) -> None:
        self.values[key], self.ttls[key] = value.encode(), ex

    async def delete(self, key: str) -> None:
        self.values.pop(key, None)


@dataclass
class Channels:
    """A collection's find_one by id, with its projection."""

    documents: dict[str, Document] = field(default_factory=dict)
    reads: int = 0

    async def find_one(self, query: Document, projection: list[str]) -> Document | None:
        self.reads += 1
        found = self.documents.get(query["_id"])
        return None if found is None else {k: v for k, v in found.items() if k in projection}


def _directory(*documents: Document) -> tuple[ChannelDirectory, Cache, Channels]:
    cache, channels = Cache(), Channels({d["_id"]: d for d in documents})
    directory = ChannelDirectory(cast(Any, {"channels": channels}), cast(Any, cache))
    return directory, cache, channels


async def test_a_channel_is_read_once_then_from_the_cache_without_credentials() -> None:
    directory, cache, channels = _directory(CHANNEL)
    assert await directory.resolve(_message()) == summary(CHANNEL)
    assert await directory.resolve(_message()) == summary(CHANNEL)
    assert channels.reads == 1
    assert json.loads(cache.values[cache_key("ch_1")]) == summary(CHANNEL)
    assert cache.ttls[cache_key("ch_1")] == CACHE_TTL_S


async def test_invalidating_reads_the_channel_again() -> None:
    directory, _, channels = _directory(CHANNEL)
    await directory.resolve(_message())
    channels.documents["ch_1"] = {**CHANNEL, "status": "disconnected"}
    await directory.resolve(_message())  # still cached as active
    await directory.invalidate("ch_1")
    with pytest.raises(ChannelDisconnected):
        await directory.resolve(_message())


async def test_a_missing_channel_is_not_cached() -> None:
    directory, cache, channels = _directory()
    with pytest.raises(UnknownChannel):
        await directory.resolve(_message())
    assert cache.values == {}
    channels.documents["ch_1"] = CHANNEL  # connected a moment later
    assert (await directory.resolve(_message()))["_id"] == "ch_1"


async def test_a_cached_channel_is_still_checked_against_the_record() -> None:
    directory, _, _ = _directory(CHANNEL)
    await directory.resolve(_message())
    with pytest.raises(UnknownChannel):
        await directory.resolve(_message(workspace_id="w2"))
    with pytest.raises(UnknownChannel):
        await directory.resolve(_message(channel="whatsapp"))


async def test_a_record_without_a_channel_id_is_refused_without_a_read() -> None:
    directory, _, channels = _directory(CHANNEL)
    with pytest.raises(UnknownChannel):
        await directory.resolve(_message(channel_id=""))
    assert channels.reads == 0


async def test_the_widgets_channel_is_its_application() -> None:
    directory, _, channels = _directory()
    web = await directory.resolve(_message(channel="web", channel_id="a1"))
    assert (web["_id"], web["type"], web["status"]) == ("a1", "web", "active")
    for other in ("a2", "ch_1", ""):
        with pytest.raises(UnknownChannel, match="the widget's channel is its application"):
            await directory.resolve(_message(channel="web", channel_id=other))
    assert channels.reads == 0


async def test_the_api_channel_is_its_application() -> None:
    directory, _, channels = _directory()
    api = await directory.resolve(_message(channel="api", channel_id="a1"))
    assert (api["_id"], api["type"], api["status"]) == ("a1", "api", "active")
    assert api["workspace_id"] == "w1"
    for other in ("a2", "ch_1", ""):
        with pytest.raises(UnknownChannel, match="the API's channel is its application"):
            await directory.resolve(_message(channel="api", channel_id=other))
    assert channels.reads == 0


async def test_sandbox_replays_need_no_channel_document() -> None:
    directory, _, channels = _directory()
    sandbox = await directory.resolve(_message(channel=SANDBOX_CHANNEL, channel_id="prompt-v2"))
    assert sandbox["type"] == SANDBOX_CHANNEL
    assert channels.reads == 0
