"""The platform sender in a real worker, against the strict Telegram fake and a Standard
Webhooks receiver: records put on platform.outbound as the delivery agent puts them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio

from core.channels import standard_webhooks
from core.ids import new_id
from core.settings import Settings
from streams.contract import CONVERSATION_EVENTS, PLATFORM_OUTBOUND, dead_letter_of
from streams.replay import redrive
from tests.fakes.telegram import FakeTelegram
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.integration.channel_harness import (
    api_channel,
    bot_token,
    platform_send,
    telegram_channel,
    until,
)
from tests.integration.pipeline_harness import (
    Worker,
    create_application,
    read_topic,
    running,
    send_all,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

SIGNING_SECRET = standard_webhooks.new_secret()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def telegram() -> AsyncIterator[FakeTelegram]:
    # Stricter per chat than the sender paces in this module, so the fake answers 429s.
    async with FakeTelegram(chat_burst=20, chat_per_s=20.0) as fake:
        yield fake


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver(SIGNING_SECRET) as started:
        yield started


@pytest.fixture(scope="module")
def worker(
    tmp_path_factory: pytest.TempPathFactory, telegram: FakeTelegram, receiver: WebhookReceiver
) -> Iterator[Worker]:
    env = {
        "SWITCHBOARD_TELEGRAM_API_BASE": telegram.url,
        "SWITCHBOARD_TELEGRAM_CHAT_RATE_PER_S": "100",
        "SWITCHBOARD_CHANNEL_ALLOW_NETWORKS": "127.0.0.0/8",
    }
    logs = tmp_path_factory.mktemp("sender")
    with running(Worker(logs, "sender-worker", sender=True, env=env)) as started:
        yield started


@dataclass(frozen=True)
class ConnectedBot:
    channel: dict[str, Any]
    token: str

    def texts(self, telegram: FakeTelegram, chat: str) -> list[str]:
        """What the fake took from this bot into ``chat``, in order."""
        return [m.text or "" for m in telegram.sent(self.token, int(chat))]


async def _connected(settings: Settings, telegram: FakeTelegram, bot_id: int) -> ConnectedBot:
    token = bot_token(bot_id)
    telegram.add_bot(token, bot_id, f"bot{bot_id}")
    workspace = new_id("ws")
    application = await create_application(settings, workspace)
    return ConnectedBot(await telegram_channel(settings, workspace, application, token), token)


async def test_a_burst_to_one_chat_arrives_complete_and_in_order_through_429s(
    settings: Settings, telegram: FakeTelegram, worker: Worker
) -> None:
    bot = await _connected(settings, telegram, 710001)
    # Two flood answers up front, whatever the sender's pace; more come from the fake's limit
    # (20 a second in a chat) whenever the sender goes faster than that.
    telegram.fail_next("sendMessage", 2, status=429, retry_after=1)
    burst = [platform_send(bot.channel, "5001", f"answer {n}") for n in range(200)]
    await send_all(settings, PLATFORM_OUTBOUND, burst)
    await until(lambda: len(bot.texts(telegram, "5001")) >= 200, 180, "200 answers")
    assert bot.texts(telegram, "5001") == [f"answer {n}" for n in range(200)]
    refused = [c for c in telegram.calls if c.status == 429 and c.token == bot.token]
    assert len(refused) >= 2, "the sender never met a 429: the path was not exercised"


async def test_a_long_answer_goes_out_in_pieces_in_order(
    settings: Settings, telegram: FakeTelegram, worker: Worker
) -> None:
    bot = await _connected(settings, telegram, 710002)
    paragraphs = [f"Paragraph {n}. " + "word " * 700 for n in range(3)]
    await send_all(
        settings, PLATFORM_OUTBOUND, [platform_send(bot.channel, "5002", "\n\n".join(paragraphs))]
    )
    await until(lambda: len(bot.texts(telegram, "5002")) >= 3, 60, "three pieces")
    pieces = bot.texts(telegram, "5002")
    assert [piece.split(".")[0] for piece in pieces] == [
        "Paragraph 0",
        "Paragraph 1",
        "Paragraph 2",
    ]
    assert all(len(piece) <= 4096 for piece in pieces)


async def test_server_errors_are_retried_and_the_answer_sent_once(
    settings: Settings, telegram: FakeTelegram, worker: Worker
) -> None:
    bot = await _connected(settings, telegram, 710003)
    telegram.fail_next("sendMessage", 2, status=502)
    await send_all(
        settings, PLATFORM_OUTBOUND, [platform_send(bot.channel, "5003", "after two 502s")]
    )
    await until(lambda: bot.texts(telegram, "5003"), 60, "the answer")
    assert bot.texts(telegram, "5003") == ["after two 502s"]


async def test_a_user_who_blocked_the_bot_is_dead_lettered_and_operators_are_told(
    settings: Settings, telegram: FakeTelegram, worker: Worker
) -> None:
    bot = await _connected(settings, telegram, 710004)
    telegram.block(bot.token, 5004)
    blocked = platform_send(bot.channel, "5004", "are you there?")
    after = platform_send(bot.channel, "5005", "someone else still hears us")
    await send_all(settings, PLATFORM_OUTBOUND, [blocked, after])
    await until(lambda: bot.texts(telegram, "5005"), 60, "the other chat's answer")

    [letter] = await read_topic(
        settings, dead_letter_of(PLATFORM_OUTBOUND), {blocked.conversation_id}, 30, want=1
    )
    dead = json.loads(letter.value)
    assert dead["attempts"] == 1
    assert "Forbidden: bot was blocked by the user" in dead["reason"]
    events = await read_topic(settings, CONVERSATION_EVENTS, {blocked.conversation_id}, 30, 1)
    failed = [json.loads(e.value) for e in events]
    assert [(e["type"], e["subject_id"]) for e in failed] == [
        ("delivery.failed", blocked.message_id)
    ]
    assert "blocked by the user" in failed[0]["data"]["reason"]
    assert bot.texts(telegram, "5004") == []

    # The user unblocks the bot; an operator re-drives the dead letters: it is sent, once.
    telegram.unblock(bot.token, 5004)
    redriven = await redrive(settings, dead_letter_of(PLATFORM_OUTBOUND))
    assert blocked.message_id in {json.loads(letter.value)["message_id"] for letter in redriven}
    await until(lambda: bot.texts(telegram, "5004"), 60, "the re-driven answer")
    await asyncio.sleep(1)
    assert bot.texts(telegram, "5004") == ["are you there?"]


async def test_an_api_channel_receiver_that_was_down_gets_everything_once_in_order(
    settings: Settings, receiver: WebhookReceiver, worker: Worker
) -> None:
    workspace = new_id("ws")
    application = await create_application(settings, workspace)
    channel = await api_channel(settings, workspace, application, receiver.url, SIGNING_SECRET)
    await receiver.down(refuse_connections=True)
    sends = [
        platform_send(channel, user, f"{user} message {n}")
        for n in range(10)
        for user in ("user-a", "user-b")
    ]
    await send_all(settings, PLATFORM_OUTBOUND, sends)
    await asyncio.sleep(4)  # several attempts fail meanwhile
    assert receiver.received == []
    await receiver.up()
    await until(lambda: len(receiver.received) >= len(sends), 90, "every webhook")

    assert receiver.refused == []  # every signature verified
    by_id = [r.id for r in receiver.received]
    assert sorted(by_id) == sorted(s.message_id for s in sends)  # each once
    for user in ("user-a", "user-b"):
        texts = [r.body["data"]["text"] for r in receiver.received
                 if r.body["data"]["external_user_id"] == user]  # fmt: skip
        assert texts == [f"{user} message {n}" for n in range(10)]
    first = receiver.received[0].body
    assert first["type"] == "message.created"
    assert first["data"]["application_id"] == application
