"""Telegram end to end: a bot connected through the bots service, updates delivered by the
strict Telegram fake to the integrations service's webhook, a real worker (the demo model
answering) and the platform sender sending the answers back to the fake."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from core import ids
from core.ai.llm import DEMO_PREFIX
from core.ids import new_id
from core.settings import Settings
from tests.fakes import telegram_updates as tg
from tests.fakes.telegram import FakeTelegram
from tests.integration.api_harness import operator_headers
from tests.integration.channel_harness import bot_token, until
from tests.integration.pipeline_harness import Worker, create_application, documents, running
from web import bots, conversations, integrations

pytestmark = pytest.mark.asyncio(loop_scope="module")

BOT_ID = 730_001
CHATS = [6_100_000 + n for n in range(50)]


@dataclass(frozen=True)
class Stack:
    telegram: FakeTelegram
    token: str
    channel_id: str
    workspace_id: str
    conversations: TestClient[web.Request, web.Application]

    def answers(self, chat: int) -> list[str]:
        return [m.text or "" for m in self.telegram.sent(self.token, chat)]

    def conversation_id(self, chat: int) -> str:
        return ids.conversation_id("telegram", self.channel_id, str(chat))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def telegram() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:  # Telegram's documented limits
        yield fake


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def webhook(settings: Settings, telegram: FakeTelegram) -> AsyncIterator[TestServer]:
    """The integrations service on a port of its own: where Telegram posts."""
    local = settings.model_copy(update={"telegram_api_base": telegram.url})
    server = TestServer(integrations.create_app(local), host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory, telegram: FakeTelegram) -> Iterator[Worker]:
    env = {"SWITCHBOARD_TELEGRAM_API_BASE": telegram.url}
    logs = tmp_path_factory.mktemp("telegram")
    with running(Worker(logs, "telegram-worker", ai=True, sender=True, env=env)) as started:
        yield started


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(
    settings: Settings, telegram: FakeTelegram, webhook: TestServer, worker: Worker
) -> AsyncIterator[Stack]:
    """A workspace whose application has a Telegram bot connected through the bots service."""
    workspace = new_id("ws")
    application = await create_application(settings, workspace)
    token = bot_token(BOT_ID)
    telegram.add_bot(token, BOT_ID, "e2e_shop_bot")
    public = settings.model_copy(
        update={"telegram_api_base": telegram.url, "public_url": str(webhook.make_url(""))}
    )
    admin = operator_headers(settings, workspace, "admin")
    async with TestClient(TestServer(bots.create_app(public))) as bots_client:
        response = await bots_client.post(
            "/api/channels",
            json={"type": "telegram", "application_id": application,
                  "credentials": {"bot_token": token}},
            headers=admin,
        )  # fmt: skip
        assert response.status == 201, await response.text()
        channel = await response.json()
    hook = telegram.webhook(token)
    assert hook is not None
    assert hook.url == f"{public.public_base_url}/webhooks/telegram/{channel['id']}"
    async with TestClient(TestServer(conversations.create_app(settings))) as client:
        yield Stack(telegram, token, channel["id"], workspace, client)


def _said(answer: str) -> str:
    """What the demo model says the user said."""
    assert answer.startswith(DEMO_PREFIX), answer
    return answer.removeprefix(f"{DEMO_PREFIX}You said: ").split(". Configure", 1)[0]


async def _deliver(stack: Stack, update: dict[str, Any]) -> None:
    assert await stack.telegram.deliver(stack.token, update) == 200


async def test_fifty_conversations_interleaved_are_answered_in_order(stack: Stack) -> None:
    update_id = 1000
    for turn in range(2):
        for chat in CHATS:
            update_id += 1
            text = f"chat {chat} turn {turn}"
            await _deliver(stack, tg.text(update_id, chat, chat, text, message_id=10 + turn))
    await until(lambda: all(len(stack.answers(chat)) >= 2 for chat in CHATS), 180, "100 answers")
    for chat in CHATS:
        assert [_said(a) for a in stack.answers(chat)] == [
            f"chat {chat} turn {turn}" for turn in range(2)
        ]


async def test_a_redelivered_update_is_answered_once(stack: Stack) -> None:
    chat = 6_200_001
    update = tg.text(2001, chat, chat, "only once please", message_id=5)
    await _deliver(stack, update)
    await _deliver(stack, update)  # Telegram retries when it missed our 200
    await until(lambda: stack.answers(chat), 60, "the answer")
    later = tg.text(2002, chat, chat, "and then this", message_id=6)
    await _deliver(stack, later)
    await until(lambda: len(stack.answers(chat)) >= 2, 60, "the next answer")
    assert [_said(a) for a in stack.answers(chat)] == ["only once please", "and then this"]


async def test_an_operator_takes_over_and_the_reply_reaches_telegram(
    settings: Settings, stack: Stack
) -> None:
    chat = 6_200_002
    await _deliver(stack, tg.text(3001, chat, chat, "I want a human", message_id=1))
    await until(lambda: stack.answers(chat), 60, "the bot's answer")
    conversation = stack.conversation_id(chat)
    operator = operator_headers(settings, stack.workspace_id, "agent")
    taken = await stack.conversations.post(
        f"/api/conversations/{conversation}/takeover", json={}, headers=operator
    )
    assert taken.status == 202, await taken.text()
    replied = await stack.conversations.post(
        f"/api/conversations/{conversation}/reply",
        json={"text": "Hello, this is Ana from support."},
        headers=operator,
    )
    assert replied.status == 202, await replied.text()
    await until(lambda: len(stack.answers(chat)) >= 2, 60, "the operator's reply")
    assert stack.answers(chat)[1] == "Hello, this is Ana from support."


async def test_a_button_press_is_a_postback_answered_and_acknowledged(stack: Stack) -> None:
    chat = 6_200_003
    await _deliver(stack, tg.text(4001, chat, chat, "which size?", message_id=1))
    await until(lambda: stack.answers(chat), 60, "the first answer")
    bot_message = stack.telegram.sent(stack.token, chat)[0].message_id
    press = tg.callback_query(4002, chat, chat, "size:L", message_id=bot_message)
    await _deliver(stack, press)
    await until(lambda: len(stack.answers(chat)) >= 2, 60, "the postback's answer")
    assert _said(stack.answers(chat)[1]) == "size:L"
    query_id = press["callback_query"]["id"]
    await until(
        lambda: any(a.callback_query_id == query_id for a in stack.telegram.callback_answers),
        30,
        "answerCallbackQuery",
    )


async def test_a_photo_arrives_as_a_file_reference_with_its_caption(
    settings: Settings, stack: Stack
) -> None:
    chat = 6_200_004
    update = tg.photo(5001, chat, chat, 1, file_id="AgACphoto-e2e", caption="my receipt")
    await _deliver(stack, update)
    await until(lambda: stack.answers(chat), 60, "the answer")
    assert _said(stack.answers(chat)[0]) == "my receipt"
    stored = [
        d
        for d in await documents(settings, "messages", stack.workspace_id)
        if d["conversation_id"] == stack.conversation_id(chat) and d["role"] == "user"
    ]
    [message] = stored
    assert message["text"] == "my receipt"
    assert [(a["kind"], a["platform_ref"]) for a in message["attachments"]] == [
        ("image", "AgACphoto-e2e")
    ]
