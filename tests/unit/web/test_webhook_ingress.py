"""The webhook ingress's steps, against in-memory stand-ins for MongoDB, Redis and Kafka (the
integration test runs the service against the real ones): what is refused is neither parsed nor
claimed, a failed send frees the delivery for the platform's retry, and body limits hold with
and without a Content-Length."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any, cast

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from core.channels.api import ApiChannelAdapter
from core.channels.base import (
    ChannelAccount,
    MalformedWebhook,
    PlatformCall,
    SendFailed,
    WebhookRefused,
)
from core.channels.registry import ChannelRegistry
from core.channels.telegram import SECRET_HEADER, TelegramAdapter
from core.clients.database import Document
from core.clients.producer import LazyProducer
from core.errors import DependencyUnavailable
from core.security.egress import EgressClient
from core.security.secrets import SecretBox
from core.settings import Settings
from core.stores.channel_status import ChannelStatus
from core.stores.channel_store import ChannelStore, RecentChannels, seal_credentials
from streams.contract import MESSAGES_INBOUND
from web.service import service_app
from web.webhook_ingress import (
    DONE,
    Deliveries,
    Outcome,
    PlatformCalls,
    WebhookIngress,
    WebhookNotFound,
    delivery_key,
    read_body,
)

BOX = SecretBox("unit-test-key")
SECRET = "s3cret-of-the-webhook"
TOKEN = "123456:" + "A" * 35
DEDUP_TTL_S = 3600


class FakeRedis:
    """The three calls the deliveries make, with their expiries."""

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}
        self.ttls: dict[str, int] = {}

    async def set(
        self, key: str, value: bytes, *, nx: bool = False, ex: int | None = None
    ) -> bool | None:
        if nx and key in self.values:
            return None
        self.values[key] = value
        if ex is not None:
            self.ttls[key] = ex
        return True

    async def get(self, key: str) -> bytes | None:
        return self.values.get(key)

    async def delete(self, key: str) -> int:
        self.ttls.pop(key, None)
        return 1 if self.values.pop(key, None) is not None else 0


class FakeStatus:
    def __init__(self, *, fail: bool = False) -> None:
        self.received: list[tuple[str, int]] = []
        self.dropped: list[tuple[str, str]] = []
        self.refused: list[tuple[str, str]] = []
        self._fail = fail

    async def webhook_received(self, channel_id: str, messages: int) -> None:
        if self._fail:
            raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379")
        self.received.append((channel_id, messages))

    async def webhook_dropped(self, channel_id: str, reason: str) -> None:
        self.dropped.append((channel_id, reason))

    async def webhook_refused(self, channel_id: str, reason: str) -> None:
        self.refused.append((channel_id, reason))


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, bytes]] = []
        self.failing = False

    async def ready(self) -> None:
        return None

    async def send(self, topic: str, key: str, value: bytes) -> None:
        if self.failing:
            raise DependencyUnavailable(f"Kafka did not take the record on {topic}")
        self.sent.append((topic, key, value))


class FakeChannels:
    def __init__(self, *documents: Document) -> None:
        self.documents = {d["_id"]: d for d in documents}

    async def by_id(self, channel_id: str) -> Document | None:
        return self.documents.get(channel_id)


def _channel(channel_id: str = "ch_1", status: str = "active") -> Document:
    return {
        "_id": channel_id,
        "workspace_id": "ws_1",
        "application_id": "app_1",
        "type": "telegram",
        "status": status,
        "config": {"bot_id": "123456", "bot_username": "helper_bot"},
        "credentials": seal_credentials(BOX, {"bot_token": TOKEN}),
        "webhook_secret": BOX.seal(SECRET),
    }


def _update(update_id: int = 1000, text: str = "hello") -> bytes:
    return json.dumps(
        {
            "update_id": update_id,
            "message": {
                "message_id": 7,
                "date": 1_700_000_000,
                "chat": {"id": 42, "type": "private", "first_name": "Ada"},
                "from": {"id": 42, "is_bot": False, "first_name": "Ada"},
                "text": text,
            },
        }
    ).encode()


class Parts:
    def __init__(self, *, status_fails: bool = False) -> None:
        self.redis = FakeRedis()
        self.status = FakeStatus(fail=status_fails)
        self.producer = FakeProducer()
        self.channels = FakeChannels(_channel(), _channel("ch_off", status="disconnected"))
        registry = ChannelRegistry(
            {
                "telegram": TelegramAdapter("http://127.0.0.1:9"),
                "api": ApiChannelAdapter(EgressClient()),
            }
        )
        self.ingress = WebhookIngress(
            channels=cast(ChannelStore, self.channels),
            registry=registry,
            box=BOX,
            producer=cast(LazyProducer, self.producer),
            deliveries=Deliveries(cast(Redis, self.redis), DEDUP_TTL_S),
            status=cast(ChannelStatus, self.status),
            calls=PlatformCalls(),
        )

    async def take(
        self, body: bytes, *, channel: str = "ch_1", kind: str = "telegram", secret: str = SECRET
    ) -> Outcome:
        return await self.ingress.take(kind, channel, {SECRET_HEADER: secret}, body)


async def test_a_message_is_produced_then_its_delivery_is_done() -> None:
    parts = Parts()
    assert await parts.take(_update()) is Outcome.TAKEN
    [(topic, key, _)] = parts.producer.sent
    assert topic == MESSAGES_INBOUND
    assert key.startswith("cv_")
    key_name = delivery_key("ch_1", "1000")
    assert parts.redis.values == {key_name: DONE}
    assert parts.redis.ttls[key_name] == DEDUP_TTL_S
    assert parts.status.received == [("ch_1", 1)]


async def test_a_redelivery_is_a_duplicate_and_a_held_claim_is_in_progress() -> None:
    parts = Parts()
    await parts.take(_update())
    assert await parts.take(_update()) is Outcome.DUPLICATE
    parts.redis.values[delivery_key("ch_1", "2000")] = b"taking:another-request"
    assert await parts.take(_update(2000)) is Outcome.IN_PROGRESS
    assert len(parts.producer.sent) == 1


async def test_a_refused_request_is_neither_parsed_nor_claimed() -> None:
    parts = Parts()
    with pytest.raises(WebhookRefused):
        await parts.take(b"{not json", secret="wrong")
    with pytest.raises(WebhookRefused):
        await parts.take(_update(), secret="")
    with pytest.raises(MalformedWebhook):
        await parts.take(b"{not json")
    assert parts.producer.sent == []
    assert parts.redis.values == {}
    # Each refusal is in the channel's health, with its reason.
    assert [reason.split(":")[0] for _, reason in parts.status.refused] == [
        "missing or wrong X-Telegram-Bot-Api-Secret-Token",
        "missing or wrong X-Telegram-Bot-Api-Secret-Token",
        "the body is not JSON",
    ]


async def test_unknown_channels_types_and_ids_are_one_answer() -> None:
    parts = Parts()
    refusals = []
    for kind, channel in [
        ("telegram", "ch_nobody"),
        ("api", "ch_1"),  # a telegram channel under another type's path
        ("whatsup", "ch_1"),
        ("telegram", "x" * 101),
    ]:
        with pytest.raises(WebhookNotFound) as refused:
            await parts.take(_update(), kind=kind, channel=channel)
        refusals.append((refused.value.status, refused.value.code, refused.value.message))
    assert set(refusals) == {(404, "not_found", "no such webhook")}


async def test_a_disconnected_channel_drops_only_verified_requests() -> None:
    parts = Parts()
    with pytest.raises(WebhookRefused):
        await parts.take(_update(), channel="ch_off", secret="wrong")
    assert parts.status.dropped == []
    assert await parts.take(b"{not even json", channel="ch_off") is Outcome.DROPPED
    assert parts.status.dropped == [("ch_off", "the channel is disconnected")]
    assert parts.producer.sent == []
    assert parts.redis.values == {}


async def test_a_failed_send_frees_the_delivery_for_the_retry() -> None:
    parts = Parts()
    parts.producer.failing = True
    with pytest.raises(DependencyUnavailable):
        await parts.take(_update())
    assert parts.redis.values == {}
    parts.producer.failing = False
    assert await parts.take(_update()) is Outcome.TAKEN
    assert len(parts.producer.sent) == 1


async def test_a_status_that_cannot_be_written_does_not_fail_the_delivery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    parts = Parts(status_fails=True)
    with caplog.at_level(logging.WARNING, logger="web.webhook_ingress"):
        assert await parts.take(_update()) is Outcome.TAKEN
    assert caplog.messages == ["channel status not recorded: ConnectionError"]


class CallingAdapter:
    """Only ``call``, failing as told."""

    def __init__(self, error: BaseException | None = None, *, hang: bool = False) -> None:
        self.error = error
        self.hang = hang
        self.calls: list[PlatformCall] = []

    async def call(self, account: ChannelAccount, call: PlatformCall) -> None:
        self.calls.append(call)
        if self.hang:
            await asyncio.sleep(3600)
        if self.error is not None:
            raise self.error


ACCOUNT = ChannelAccount("ch_1", "telegram", "ws_1", "app_1", {"bot_token": TOKEN}, SECRET)
ANSWER = PlatformCall("answerCallbackQuery", {"callback_query_id": "99"})


@pytest.mark.parametrize(
    ("error", "logged"),
    [
        (SendFailed("Telegram answerCallbackQuery: 400 query is too old"), "400 query is too old"),
        (RuntimeError(f"POST https://api.telegram.org/bot{TOKEN}/x failed"), "RuntimeError"),
    ],
)
async def test_a_failed_call_is_logged_without_its_token(
    caplog: pytest.LogCaptureFixture, error: BaseException, logged: str
) -> None:
    adapter = CallingAdapter(error)
    calls = PlatformCalls()
    with caplog.at_level(logging.WARNING, logger="web.webhook_ingress"):
        calls.start(cast(Any, adapter), ACCOUNT, (ANSWER, ANSWER))
        await calls.close()
    assert adapter.calls == [ANSWER, ANSWER]  # one failure does not stop the next call
    assert len(caplog.messages) == 2
    assert all(logged in m and "ch_1" in m for m in caplog.messages)
    assert not any(TOKEN in m or "123456:" in m for m in caplog.messages)


async def test_calls_still_running_at_close_are_cancelled() -> None:
    adapter = CallingAdapter(hang=True)
    calls = PlatformCalls(grace_s=0.05)
    calls.start(cast(Any, adapter), ACCOUNT, (ANSWER,))
    await asyncio.sleep(0)
    await asyncio.wait_for(calls.close(), timeout=2)
    assert adapter.calls == [ANSWER]


LIMIT = 4096


async def _echo(request: web.Request) -> web.Response:
    return web.json_response({"size": len(await read_body(request))})


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = service_app(settings, "probe", (), max_body_bytes=LIMIT)
    app.router.add_post("/echo", _echo)
    async with TestClient(TestServer(app)) as client:
        yield client


async def _chunks(size: int) -> AsyncIterator[bytes]:
    for _ in range(size // 1024):
        yield b"x" * 1024


def _too_large(body: Mapping[str, Any]) -> bool:
    return body == {
        "error": {"code": "body_too_large", "message": f"the body is larger than {LIMIT} bytes"}
    }


async def test_a_body_up_to_the_limit_is_read(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.post("/echo", data=b"x" * LIMIT)
    assert (response.status, await response.json()) == (200, {"size": LIMIT})


async def test_a_larger_body_is_refused_with_or_without_its_length(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.post("/echo", data=b"x" * (LIMIT + 1))
    assert response.status == 413
    assert _too_large(await response.json())
    response = await client.post("/echo", data=_chunks(LIMIT * 4))
    assert response.request_info.headers.get("Transfer-Encoding") == "chunked"
    assert response.status == 413
    assert _too_large(await response.json())


class _CountingStore:
    """Channel documents by id, counting the reads that reach it."""

    def __init__(self, documents: dict[str, Document]) -> None:
        self.documents = documents
        self.reads = 0

    async def by_id(self, channel_id: str) -> Document | None:
        self.reads += 1
        return self.documents.get(channel_id)


async def test_recent_channels_are_read_again_after_their_ttl_and_misses_are_not_kept() -> None:
    now = [0.0]
    store = _CountingStore({"ch_a": {"_id": "ch_a"}, "ch_b": {"_id": "ch_b"}})
    recent = RecentChannels(cast(ChannelStore, store), ttl_s=2.0, size=1, clock=lambda: now[0])
    assert await recent.by_id("ch_a") == {"_id": "ch_a"}
    assert await recent.by_id("ch_a") == {"_id": "ch_a"}
    assert store.reads == 1
    now[0] = 2.5  # past the TTL: a disconnect or a new secret is seen
    store.documents["ch_a"] = {"_id": "ch_a", "status": "disconnected"}
    assert await recent.by_id("ch_a") == {"_id": "ch_a", "status": "disconnected"}
    assert store.reads == 2
    for _ in range(3):  # made-up ids reach the store every time and are never kept
        assert await recent.by_id("ch_unknown") is None
    assert store.reads == 5
    await recent.by_id("ch_b")  # the cache holds one: ch_a goes
    await recent.by_id("ch_a")
    assert store.reads == 7
