"""Telegram webhooks through the integrations service, against the real Kafka, FerretDB and Redis.

The service runs in-process; channels are inserted into MongoDB as the bots service stores
them (credentials and secret sealed) and their webhook is set on ``FakeTelegram`` with the
adapter's own connect, so updates (built as Telegram documents them) arrive as Telegram sends
them, and answerCallbackQuery goes to the fake. Requests that are not Telegram's (a prober's, a
broken or oversized body) are posted directly. What was produced is read back from
``messages.inbound`` from the end offsets taken before the request; "nothing produced" also
means no record of the test's channel at all.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiokafka.structs import TopicPartition
from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from core import ids
from core.channels.telegram import TelegramAdapter
from core.clients.database import Document
from core.security.secrets import SecretBox
from core.settings import Settings
from core.stores.channel_status import ChannelStatus
from core.stores.channel_store import seal_credentials
from streams.contract import MESSAGES_INBOUND
from streams.records import InboundMessage, decode
from tests.fakes import telegram_updates as tg
from tests.fakes.telegram import SECRET_HEADER, CallbackAnswer, FakeTelegram
from tests.integration.topic_reader import end_offsets, records_since
from web import integrations
from web.webhook_ingress import delivery_key

pytestmark = pytest.mark.integration

Client = TestClient[web.Request, web.Application]
NOT_FOUND = {"error": {"code": "not_found", "message": "no such webhook"}}
USER_ID = 5_512_378_901


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        yield fake


@pytest.fixture
def ingress_settings(settings: Settings, telegram: FakeTelegram) -> Settings:
    return settings.model_copy(update={"telegram_api_base": telegram.url})


@pytest.fixture
async def client(ingress_settings: Settings) -> AsyncIterator[Client]:
    async with TestClient(TestServer(integrations.create_app(ingress_settings))) as client:
        yield client


@dataclass(frozen=True)
class Channel:
    id: str
    workspace_id: str
    application_id: str
    secret: str
    token: str
    type: str = "telegram"

    @property
    def path(self) -> str:
        return f"/webhooks/{self.type}/{self.id}"

    def conversation(self, chat_id: int) -> str:
        return ids.conversation_id(self.type, self.id, str(chat_id))


@dataclass
class Tenants:
    """Connects channels of new tenants, and deletes them after the test."""

    settings: Settings
    db: AsyncDatabase[Document]
    client: Client
    telegram: FakeTelegram
    made: list[Channel] = field(default_factory=list)

    async def connect(self, *, status: str = "active", kind: str = "telegram") -> Channel:
        box = SecretBox(self.settings.encryption_key.get_secret_value())
        channel = Channel(
            id=f"ch_{uuid.uuid4().hex}",
            workspace_id=f"ws_{uuid.uuid4().hex}",
            application_id=f"app_{uuid.uuid4().hex}",
            secret=secrets.token_urlsafe(32),
            token=f"{tg.BOT_ID}:{secrets.token_urlsafe(27)[:35]}",
            type=kind,
        )
        self.made.append(channel)
        await self.db["channels"].insert_one(
            {
                "_id": channel.id,
                "workspace_id": channel.workspace_id,
                "application_id": channel.application_id,
                "type": kind,
                "status": status,
                "name": tg.BOT_USERNAME,
                "platform_id": str(tg.BOT_ID),
                "config": {"bot_id": str(tg.BOT_ID), "bot_username": tg.BOT_USERNAME},
                "credentials": seal_credentials(box, {"bot_token": channel.token}),
                "webhook_secret": box.seal(channel.secret),
                "created_at": 1_700_000_000.0,
                "updated_at": 1_700_000_000.0,
            }
        )
        if kind == "telegram":
            await self._set_webhook(channel)
        return channel

    async def _set_webhook(self, channel: Channel) -> None:
        """As connecting does: Telegram is told the channel's URL and secret."""
        self.telegram.add_bot(channel.token, tg.BOT_ID, tg.BOT_USERNAME)
        adapter = TelegramAdapter(self.telegram.url)
        try:
            url = str(self.client.make_url(channel.path))
            await adapter.connect({"bot_token": channel.token}, url, channel.secret)
        finally:
            await adapter.close()

    async def delete(self) -> None:
        await self.db["channels"].delete_many({"_id": {"$in": [c.id for c in self.made]}})


@pytest.fixture
async def tenants(
    ingress_settings: Settings,
    db: AsyncDatabase[Document],
    client: Client,
    telegram: FakeTelegram,
) -> AsyncIterator[Tenants]:
    made = Tenants(ingress_settings, db, client, telegram)
    yield made
    await made.delete()


@pytest.fixture
async def channel(tenants: Tenants) -> Channel:
    return await tenants.connect()


def _update_id() -> int:
    return secrets.randbelow(900_000_000) + 100_000_000


async def _post(
    client: Client, channel: Channel, body: bytes | io.BytesIO, secret: str | None = None
) -> tuple[int, Any]:
    """A request that is not Telegram's delivery: a broken body, or a prober's."""
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers[SECRET_HEADER] = secret
    response = await client.post(channel.path, data=body, headers=headers)
    return response.status, await response.json()


async def _offsets(settings: Settings) -> dict[TopicPartition, int]:
    return await end_offsets(settings, MESSAGES_INBOUND)


async def _produced(
    settings: Settings, offsets: dict[TopicPartition, int], channel: Channel
) -> list[InboundMessage]:
    """Every record of ``channel`` since ``offsets``, checked to be keyed by its conversation."""
    found: list[InboundMessage] = []
    for record in await records_since(settings, offsets):
        message = decode(record.value)
        if isinstance(message, InboundMessage) and message.channel_id == channel.id:
            assert record.key == message.conversation_id.encode()
            found.append(message)
    return found


async def _nothing_produced(
    settings: Settings, offsets: dict[TopicPartition, int], channel: Channel, chat_id: int
) -> None:
    records = await records_since(settings, offsets)
    assert not [r for r in records if r.key == channel.conversation(chat_id).encode()]
    assert await _produced(settings, offsets, channel) == []


async def _eventually(done: Callable[[], object], within_s: float = 5.0) -> None:
    """Wait for ``done()`` to hold: for what a background task does after the answer."""
    deadline = time.monotonic() + within_s
    while not done():
        assert time.monotonic() < deadline, "not done in time"
        await asyncio.sleep(0.02)


async def test_a_text_message_is_produced_once_kafka_has_it(
    ingress_settings: Settings, telegram: FakeTelegram, channel: Channel, redis: Redis
) -> None:
    update_id = _update_id()
    update = tg.text(
        update_id, USER_ID, USER_ID, "Hello, is anyone there?", 311, date=1_700_000_100
    )
    offsets = await _offsets(ingress_settings)

    assert await telegram.deliver(channel.token, update) == 200

    [message] = await _produced(ingress_settings, offsets, channel)
    assert message.conversation_id == channel.conversation(USER_ID)
    assert message.message_id == ids.inbound_message_id("telegram", channel.id, str(USER_ID), "311")
    assert (message.workspace_id, message.application_id) == (
        channel.workspace_id,
        channel.application_id,
    )
    assert (message.channel, message.channel_id, message.chat_id) == (
        "telegram",
        channel.id,
        str(USER_ID),
    )
    assert (message.sender_id, message.sender_name) == (str(USER_ID), "Ada Lovelace")
    assert (message.text, message.kind, message.external_id) == (
        "Hello, is anyone there?",
        "message",
        "311",
    )
    assert message.sent_at == 1_700_000_100
    assert message.attachments is None
    key = delivery_key(channel.id, str(update_id))
    assert await redis.get(key) == b"done"
    assert 0 < await redis.ttl(key) <= ingress_settings.webhook_dedup_ttl_s
    status = await ChannelStatus(redis).read(channel.id)
    assert status["messages_in_today"] == 1
    assert status["last_webhook_at"] is not None


async def test_the_answer_is_an_empty_success(client: Client, channel: Channel) -> None:
    update = tg.text(_update_id(), USER_ID, USER_ID, "hi", 312)
    body = json.dumps(update).encode()
    assert await _post(client, channel, body, secret=channel.secret) == (200, {"ok": True})


async def test_a_photo_and_a_document_are_references_with_their_caption(
    ingress_settings: Settings, telegram: FakeTelegram, channel: Channel
) -> None:
    photo = tg.photo(_update_id(), USER_ID, USER_ID, 400, caption="my broken screen")
    document = tg.document(_update_id(), USER_ID, USER_ID, 401, caption="the invoice")
    offsets = await _offsets(ingress_settings)

    assert await telegram.deliver(channel.token, photo) == 200
    assert await telegram.deliver(channel.token, document) == 200

    sent_photo, sent_document = await _produced(ingress_settings, offsets, channel)
    assert sent_photo.text == "my broken screen"
    assert sent_photo.attachments == [
        {
            "kind": "image",
            "platform_ref": "AgACAgIAAxkBAAIBZ2Zphoto1280",  # the largest size's
            "mime_type": "image/jpeg",
            "filename": "",
            "size_bytes": 187_044,
        }
    ]
    assert sent_document.text == "the invoice"
    assert sent_document.attachments == [
        {
            "kind": "file",
            "platform_ref": "BQACAgIAAxkBAAIBaGZdocument",
            "mime_type": "application/pdf",
            "filename": "report.pdf",
            "size_bytes": 48_213,
        }
    ]
    assert sent_photo.conversation_id == sent_document.conversation_id


async def test_a_button_press_is_a_postback_and_its_query_is_answered(
    ingress_settings: Settings, telegram: FakeTelegram, channel: Channel
) -> None:
    update = tg.callback_query(_update_id(), USER_ID, USER_ID, "plan:pro", message_id=55)
    query_id = update["callback_query"]["id"]
    offsets = await _offsets(ingress_settings)

    assert await telegram.deliver(channel.token, update) == 200

    [postback] = await _produced(ingress_settings, offsets, channel)
    assert (postback.kind, postback.text, postback.reply_to) == ("postback", "plan:pro", "55")
    assert postback.conversation_id == channel.conversation(USER_ID)
    assert postback.external_id == f"callback:{query_id}"
    await _eventually(lambda: telegram.callback_answers)
    assert telegram.callback_answers == [CallbackAnswer(channel.token, query_id, None, False)]


async def test_the_query_is_answered_without_holding_up_the_webhook(
    ingress_settings: Settings, telegram: FakeTelegram, channel: Channel
) -> None:
    telegram.hang_next("answerCallbackQuery")
    update = tg.callback_query(_update_id(), USER_ID, USER_ID, "yes")
    offsets = await _offsets(ingress_settings)

    assert await telegram.deliver(channel.token, update, timeout_s=5) == 200

    assert len(await _produced(ingress_settings, offsets, channel)) == 1
    await _eventually(lambda: telegram.requests["answerCallbackQuery"] == 1)
    await telegram.close()  # drops the hanging call, so the app stops without waiting for it


async def test_a_refused_call_is_logged_without_the_token(
    ingress_settings: Settings,
    telegram: FakeTelegram,
    tenants: Tenants,
    caplog: pytest.LogCaptureFixture,
) -> None:
    telegram.fail_next("answerCallbackQuery", status=400)
    update = tg.callback_query(_update_id(), USER_ID, USER_ID, "yes")
    with caplog.at_level(logging.DEBUG):
        app = integrations.create_app(ingress_settings)
        async with TestClient(TestServer(app)) as client:
            tenants.client = client
            channel = await tenants.connect()
            assert await telegram.deliver(channel.token, update) == 200
        # The app's cleanup waited for the call, which Telegram refused.
    [logged] = [r.getMessage() for r in caplog.records if r.name == "web.webhook_ingress"]
    assert channel.id in logged
    assert "answerCallbackQuery" in logged
    assert "400" in logged
    assert channel.token.partition(":")[2] not in caplog.text


async def test_an_edit_is_produced_as_an_edit_of_the_message(
    ingress_settings: Settings, telegram: FakeTelegram, channel: Channel
) -> None:
    update = tg.edited_message(
        _update_id(), USER_ID, USER_ID, "Hello, is anybody there?", 311, date=1_700_000_100
    )
    offsets = await _offsets(ingress_settings)

    assert await telegram.deliver(channel.token, update) == 200

    [edit] = await _produced(ingress_settings, offsets, channel)
    assert (edit.kind, edit.external_id, edit.text) == ("edit", "311", "Hello, is anybody there?")
    assert edit.sent_at == 1_700_000_160
    assert edit.message_id != ids.inbound_message_id("telegram", channel.id, str(USER_ID), "311")


async def test_a_group_message_not_for_the_bot_is_taken_but_not_produced(
    ingress_settings: Settings, telegram: FakeTelegram, channel: Channel, redis: Redis
) -> None:
    group = -1_001_234_567_890
    update_id = _update_id()
    chatter = tg.text(update_id, group, USER_ID, "lunch at noon?", 12, "supergroup")
    offsets = await _offsets(ingress_settings)

    assert await telegram.deliver(channel.token, chatter) == 200

    await _nothing_produced(ingress_settings, offsets, channel, group)
    assert await redis.get(delivery_key(channel.id, str(update_id))) == b"done"
    mention = tg.group_mention(_update_id(), group, USER_ID, 13)
    assert await telegram.deliver(channel.token, mention) == 200
    [addressed] = await _produced(ingress_settings, offsets, channel)
    assert addressed.chat_id == str(group)


async def test_a_redelivered_update_is_produced_once(
    ingress_settings: Settings, telegram: FakeTelegram, channel: Channel
) -> None:
    update = tg.text(_update_id(), USER_ID, USER_ID, "once, please", 500)
    offsets = await _offsets(ingress_settings)

    assert await telegram.deliver(channel.token, update) == 200
    assert await telegram.deliver(channel.token, update) == 200

    first, again = telegram.deliveries
    assert first.body == again.body
    assert len(await _produced(ingress_settings, offsets, channel)) == 1


async def test_concurrent_copies_of_an_update_are_produced_once(
    client: Client, ingress_settings: Settings, channel: Channel
) -> None:
    body = json.dumps(tg.text(_update_id(), USER_ID, USER_ID, "at the same time", 501)).encode()
    offsets = await _offsets(ingress_settings)
    headers = {SECRET_HEADER: channel.secret, "Content-Type": "application/json"}

    responses = await asyncio.gather(
        *[client.post(channel.path, data=body, headers=headers) for _ in range(4)]
    )

    assert 200 in [r.status for r in responses]
    for response in responses:
        if response.status == 503:  # another copy was being produced: Telegram retries
            assert response.headers["Retry-After"] == "5"
            assert (await response.json())["error"]["code"] == "delivery_in_progress"
        else:
            assert response.status == 200
    assert len(await _produced(ingress_settings, offsets, channel)) == 1


@pytest.mark.parametrize("secret", ["wrong-secret", None], ids=["wrong", "missing"])
async def test_a_request_without_the_channel_secret_is_refused_and_stores_nothing(
    ingress_settings: Settings,
    telegram: FakeTelegram,
    channel: Channel,
    redis: Redis,
    secret: str | None,
) -> None:
    update_id = _update_id()
    update = tg.text(update_id, USER_ID, USER_ID, "let me in", 600)
    offsets = await _offsets(ingress_settings)

    assert await telegram.deliver(channel.token, update, secret=secret) == 401

    await _nothing_produced(ingress_settings, offsets, channel, USER_ID)
    assert await redis.exists(delivery_key(channel.id, str(update_id))) == 0
    status = await ChannelStatus(redis).read(channel.id)
    assert status["last_webhook_at"] is None
    # What an operator checks when a connected bot receives nothing: the refusal and why.
    assert status["last_refused_reason"] == f"missing or wrong {SECRET_HEADER}"
    assert status["last_refused_at"] is not None


async def test_a_refusal_says_only_that(client: Client, channel: Channel) -> None:
    body = json.dumps(tg.text(_update_id(), USER_ID, USER_ID, "let me in", 601)).encode()
    assert await _post(client, channel, body) == (
        401,
        {
            "error": {
                "code": "webhook_unauthorized",
                "message": f"missing or wrong {SECRET_HEADER}",
            }
        },
    )


@pytest.mark.parametrize(
    "body",
    [b'{"update_id": 1, "message": {', b'{"message": {"text": "no update id"}}', b"[]"],
    ids=["truncated", "no-update-id", "not-an-object"],
)
async def test_a_malformed_body_is_a_400_and_produces_nothing(
    client: Client, ingress_settings: Settings, channel: Channel, redis: Redis, body: bytes
) -> None:
    offsets = await _offsets(ingress_settings)

    status, answer = await _post(client, channel, body, secret=channel.secret)

    assert status == 400
    assert answer["error"]["code"] == "malformed_webhook"
    assert await _produced(ingress_settings, offsets, channel) == []
    health = await ChannelStatus(redis).read(channel.id)
    assert health["last_refused_reason"] == answer["error"]["message"]


async def _chunks(body: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


async def test_a_body_over_the_limit_is_a_413(
    client: Client, ingress_settings: Settings, channel: Channel
) -> None:
    limit = ingress_settings.webhook_max_body_bytes
    huge = tg.text(_update_id(), USER_ID, USER_ID, "x" * limit, 700)
    body = json.dumps(huge).encode()
    offsets = await _offsets(ingress_settings)
    headers = {SECRET_HEADER: channel.secret, "Content-Type": "application/json"}
    refused = {
        "error": {"code": "body_too_large", "message": f"the body is larger than {limit} bytes"}
    }

    response = await client.post(channel.path, data=io.BytesIO(body), headers=headers)
    assert response.request_info.headers["Content-Length"] == str(len(body))
    assert (response.status, await response.json()) == (413, refused)
    chunked = await client.post(channel.path, data=_chunks(body, 65536), headers=headers)
    assert chunked.request_info.headers["Transfer-Encoding"] == "chunked"
    assert (chunked.status, await chunked.json()) == (413, refused)

    await _nothing_produced(ingress_settings, offsets, channel, USER_ID)


async def test_unknown_channels_all_answer_the_same_404(
    client: Client, tenants: Tenants, channel: Channel
) -> None:
    other_tenants = await tenants.connect(kind="api")
    update = tg.text(_update_id(), USER_ID, USER_ID, "anyone?", 800)
    headers = {SECRET_HEADER: channel.secret}
    paths = [
        f"/webhooks/telegram/ch_{uuid.uuid4().hex}",  # no such channel
        f"/webhooks/telegram/{other_tenants.id}",  # another tenant's channel, of another type
        f"/webhooks/api/{channel.id}",  # a telegram channel under another type
        f"/webhooks/whatsapp9/{channel.id}",  # no such type
    ]
    answers = []
    for path in paths:
        response = await client.post(path, json=update, headers=headers)
        answers.append((response.status, await response.read()))
    assert {status for status, _ in answers} == {404}
    assert len({body for _, body in answers}) == 1
    assert json.loads(answers[0][1]) == NOT_FOUND


async def test_a_disconnected_channel_is_answered_200_and_drops_the_update(
    ingress_settings: Settings, telegram: FakeTelegram, tenants: Tenants, redis: Redis
) -> None:
    gone = await tenants.connect(status="disconnected")
    update_id = _update_id()
    offsets = await _offsets(ingress_settings)

    update = tg.text(update_id, USER_ID, USER_ID, "hi?", 900)
    assert await telegram.deliver(gone.token, update) == 200

    await _nothing_produced(ingress_settings, offsets, gone, USER_ID)
    status = await ChannelStatus(redis).read(gone.id)
    assert status["last_dropped_reason"] == "the channel is disconnected"
    assert status["last_dropped_at"] is not None
    assert status["messages_in_today"] == 0
    assert await redis.exists(delivery_key(gone.id, str(update_id))) == 0


async def test_kafka_down_is_a_503_that_claims_nothing(
    settings: Settings, channel: Channel, redis: Redis
) -> None:
    unreachable = settings.model_copy(update={"kafka_url": "kafka://127.0.0.1:9"})
    update_id = _update_id()
    update = tg.text(update_id, USER_ID, USER_ID, "is Kafka there?", 1000)
    async with TestClient(TestServer(integrations.create_app(unreachable))) as down:
        response = await down.post(
            channel.path, json=update, headers={SECRET_HEADER: channel.secret}
        )
        assert response.status == 503
        assert response.headers["Retry-After"] == "1"
        assert (await response.json())["error"]["code"] == "dependency_unavailable"
    assert await redis.exists(delivery_key(channel.id, str(update_id))) == 0
