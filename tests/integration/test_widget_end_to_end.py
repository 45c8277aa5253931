"""Web chat through the whole platform: widget client → socket service → Kafka → pipeline → AI
stage (the strict fake model, streaming) → delivery → socket service → widget, with operators
watching; and the real widget.js in a real browser, through the gateway."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from core import ids
from core.clients.realtime import INBOX_NAMESPACE, WIDGET_NAMESPACE, conversation_room
from core.settings import Settings
from streams.contract import CONVERSATION_COMMANDS, MESSAGES_OUTBOUND, dead_letter_of
from tests.browser_support import launched_chromium
from tests.fakes.llm import JSON, FakeLLM, Text
from tests.integration.pipeline_harness import (
    Conversation,
    Worker,
    create_application,
    running,
    send_all,
)
from tests.integration.socket_harness import Client, SocketService, operator_token

pytestmark = pytest.mark.integration

#: Slow enough that the answer is seen growing, fast enough to keep the tests short.
CHUNK_DELAY_S = 0.08


@pytest.fixture(scope="module")
def ai_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    # The fake model listens on loopback, which a tenant's model URL may reach only when allowed.
    allow = {"SWITCHBOARD_LLM_ALLOW_NETWORKS": "127.0.0.1/32"}
    worker = Worker(tmp_path_factory.mktemp("widget"), "widget-worker", ai=True, env=allow)
    with running(worker):
        yield worker


def _echo(body: JSON) -> Text:
    said = [m["content"] for m in body["messages"] if m["role"] == "user"][-1]
    return Text(f"You said: {said}", chunk_delay_s=CHUNK_DELAY_S)


@pytest.fixture
async def llm() -> AsyncIterator[FakeLLM]:
    async with FakeLLM() as fake:
        fake.respond_with(_echo)
        yield fake


async def _widget_application(settings: Settings, llm: FakeLLM) -> tuple[str, str, str]:
    """A workspace, an application on the fake model and its widget key."""
    workspace_id = f"ws_{uuid.uuid4().hex}"
    key = f"pk_{uuid.uuid4().hex}"
    chatbot = {
        "instructions": "Answer in one sentence.",
        "llm": {"base_url": llm.base_url, "api_key": "test-key", "model": "fake-model"},
    }
    application_id = await create_application(
        settings,
        workspace_id,
        widget_key=key,
        prompt="You help.",
        chatbot=chatbot,
        welcome_message="Hi! Ask us anything.",
    )
    return workspace_id, application_id, key


async def test_a_visitor_chats_with_the_bot_while_an_operator_watches(
    settings: Settings, ai_worker: Worker, llm: FakeLLM, service: SocketService
) -> None:
    workspace_id, application_id, key = await _widget_application(settings, llm)
    operator = Client(INBOX_NAMESPACE)
    await operator.connect(service.url, {"token": operator_token(settings, workspace_id)})
    await service.feed_ready()
    visitor = Client(WIDGET_NAMESPACE)
    await visitor.connect(service.url, {"key": key})
    [session] = await visitor.wait_for("session")
    conversation_id = session["conversation_id"]
    assert session["welcome_message"] == "Hi! Ask us anything."

    ack = await visitor.call("message", {"id": "first", "text": "where is my order?"})
    assert ack["ok"], ack
    [answer] = await visitor.wait_for("message", within_s=60)
    deltas = visitor.received["answer.delta"]
    assert answer["role"] == "bot"
    assert answer["text"] == "You said: where is my order?"
    assert answer["request_id"] == ids.request_id(ack["message_id"])
    # The answer was streamed in pieces first, all of them for this request, adding up to it.
    assert len(deltas) > 3
    assert {d["request_id"] for d in deltas} == {answer["request_id"]}
    assert "".join(d["delta"] for d in deltas) == answer["text"]

    kinds = {(e["type"], e["subject_id"]) for e in await operator.wait_for("event", 3, 30)}
    assert ("conversation.created", conversation_id) in kinds
    assert ("message.created", ack["message_id"]) in kinds

    # The visitor drops off; their other tab goes on; the first one catches up on return.
    [sid] = [s for s, _ in service.sio.manager.get_participants(
        WIDGET_NAMESPACE, conversation_room(conversation_id))]  # fmt: skip
    other_tab = Client(WIDGET_NAMESPACE)
    await other_tab.connect(service.url, {"key": key, "token": session["token"]})
    await service.sio.disconnect(sid, namespace=WIDGET_NAMESPACE)
    await visitor.close()
    second = await other_tab.call("message", {"id": "second", "text": "thanks"})
    [missed] = await other_tab.wait_for("message", within_s=60)
    back = Client(WIDGET_NAMESPACE)
    await back.connect(
        service.url, {"key": key, "token": session["token"], "last_id": answer["id"]}
    )
    [history] = await back.wait_for("history")
    assert [m["id"] for m in history["messages"]] == [second["message_id"], missed["id"]]

    # An operator takes over and answers; the visitor sees it, the bot stays quiet.
    conversation = Conversation(workspace_id, application_id, session["visitor_id"], "web")
    assert conversation.id == conversation_id
    await send_all(
        settings,
        CONVERSATION_COMMANDS,
        [conversation.command("takeover"), conversation.command("reply", text="Hi, Ann here.")],
    )
    [reply] = await back.wait_for("message", within_s=60)
    assert (reply["role"], reply["text"]) == ("operator", "Hi, Ann here.")
    events = await operator.wait_for("event", 6, within_s=30)
    assert "mode.changed" in {e["type"] for e in events}

    # A record the delivery agent cannot deliver reaches operators as delivery.failed.
    stray = conversation.message("x", "not an outbound message")
    await send_all(settings, MESSAGES_OUTBOUND, [stray])
    await operator.wait_for("event", len(events) + 1, within_s=60)
    failed = [e for e in operator.received["event"] if e["type"] == "delivery.failed"]
    assert failed, operator.received["event"]
    assert failed[0]["subject_id"] == stray.message_id
    assert failed[0]["data"]["dead_letter_topic"] == dead_letter_of(MESSAGES_OUTBOUND)
    for client in (operator, other_tab, back):
        await client.close()


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>A shop</title></head>
<body><h1>A shop that embeds the chat</h1>
<script src="{gateway}/widget.js" data-key="{key}" async></script>
</body></html>
"""


@pytest.fixture
async def shop_page(settings: Settings) -> AsyncIterator[Any]:
    """Another site (another origin) that embeds the widget with one script tag."""
    pages: dict[str, str] = {}

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=pages["html"], content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield server, pages
    finally:
        await server.close()


async def test_the_widget_in_a_browser_streams_the_answer_and_renders_text_as_text(
    settings: Settings,
    ai_worker: Worker,
    web_all: subprocess.Popen[bytes],
    llm: FakeLLM,
    shop_page: Any,
) -> None:
    _, _, key = await _widget_application(settings, llm)
    server, pages = shop_page
    pages["html"] = PAGE.format(gateway=settings.gateway_url, key=key)
    hostile = 'look <img src=x onerror="window.pwned=1"> here'
    async with launched_chromium() as browser:
        page = await browser.new_page()
        await page.goto(str(server.make_url("/")))
        await page.get_by_role("button", name="Open chat").click()
        welcome = page.locator("[data-sb=welcome]")
        await welcome.wait_for(timeout=30_000)
        assert await welcome.text_content() == "Hi! Ask us anything."
        box = page.get_by_role("textbox", name="Message")
        await box.fill(hostile)
        await box.press("Enter")

        # The answer grows on screen before it is complete.
        streaming = page.locator("[data-sb=message][data-role=bot][data-streaming]")
        await streaming.first.wait_for(timeout=60_000)
        partial = await streaming.first.text_content()
        final = page.locator("[data-sb=message][data-role=bot]:not([data-streaming])")
        await final.first.wait_for(timeout=60_000)
        assert await final.first.text_content() == f"You said: {hostile}"
        assert partial is not None
        assert len(partial) < len(f"You said: {hostile}")

        # Both messages show the markup as text: no element was made from it, nothing ran.
        user = page.locator("[data-sb=message][data-role=user]")
        assert await user.first.text_content() == hostile
        assert await page.locator("[data-sb=log] img").count() == 0
        assert await page.evaluate("window.pwned") is None

        # A reload keeps the conversation: the same messages come back from the server.
        await page.reload()
        bubble = page.get_by_role("button", name="Open chat")
        await bubble.wait_for()
        assert await bubble.get_attribute("aria-expanded") == "true"  # it stayed open
        restored = page.locator("[data-sb=message][data-role=bot]")
        await restored.first.wait_for(timeout=30_000)
        assert await restored.first.text_content() == f"You said: {hostile}"
        assert await page.locator("[data-sb=message][data-role=user]").count() == 1
