"""The fake Bot API, driven by the real Telegram adapter where it can be and by raw calls where
the adapter never goes (bad secrets, markup, uploads): what it takes, records and refuses."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from core.channels.base import (
    ChannelAccount,
    CredentialsRefused,
    OutboundText,
    PlatformCall,
    SendFailed,
    WebhookRefused,
)
from core.channels.telegram import SECRET_HEADER, TelegramAdapter
from tests.fakes import telegram_updates as updates
from tests.fakes.telegram import DOWNLOAD_LIMIT, FakeTelegram, Webhook

TOKEN = f"{updates.BOT_ID}:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
OTHER_TOKEN = "7000000002:BBHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
SECRET = "s3cret_Webhook-token"
USER = 424242
GROUP = -1001234567890
ACCOUNT = ChannelAccount(
    channel_id="chan-1",
    type="telegram",
    workspace_id="ws-1",
    application_id="app-1",
    credentials={"bot_token": TOKEN},
    webhook_secret=SECRET,
    config={"bot_id": str(updates.BOT_ID), "bot_username": updates.BOT_USERNAME},
)


class Clock:
    """The rate limits' clock, moved by the test instead of by sleeping."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class Inbox:
    """A webhook endpoint: records what Telegram posts and answers ``status``."""

    def __init__(self) -> None:
        self.status = 200
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.headers), await request.read()))
        return web.Response(status=self.status)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def telegram(clock: Clock) -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(clock=clock) as fake:
        fake.add_bot(TOKEN, updates.BOT_ID, updates.BOT_USERNAME)
        yield fake


@pytest.fixture
async def adapter(telegram: FakeTelegram) -> AsyncIterator[TelegramAdapter]:
    channel = TelegramAdapter(api_base=telegram.url, timeout_s=2.0)
    try:
        yield channel
    finally:
        await channel.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def inbox() -> AsyncIterator[Inbox]:
    receiver = Inbox()
    app = web.Application()
    app.router.add_post("/webhooks/telegram/chan-1", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    receiver.url = f"http://127.0.0.1:{runner.addresses[0][1]}/webhooks/telegram/chan-1"
    try:
        yield receiver
    finally:
        await runner.cleanup()


async def call(
    http: aiohttp.ClientSession,
    telegram: FakeTelegram,
    method: str,
    token: str = TOKEN,
    **params: Any,
) -> tuple[int, dict[str, Any]]:
    async with http.post(f"{telegram.url}/bot{token}/{method}", json=params) as response:
        return response.status, await response.json()


def text(chat_id: str = str(USER), body: str = "hello", reply_to: str = "") -> OutboundText:
    return OutboundText(message_id="m-1", chat_id=chat_id, text=body, reply_to=reply_to)


# --- connecting ------------------------------------------------------------------------------


async def test_connect_checks_the_token_and_sets_the_webhook_with_its_secret(
    telegram: FakeTelegram, adapter: TelegramAdapter, http: aiohttp.ClientSession
) -> None:
    connected = await adapter.connect({"bot_token": TOKEN}, "https://example.test/hook", SECRET)

    assert connected.platform_id == str(updates.BOT_ID)
    assert connected.name == updates.BOT_USERNAME
    assert connected.config == {
        "bot_id": str(updates.BOT_ID),
        "bot_username": updates.BOT_USERNAME,
    }
    allowed = ("message", "edited_message", "callback_query")
    assert telegram.webhook(TOKEN) == Webhook("https://example.test/hook", SECRET, allowed)
    status, info = await call(http, telegram, "getWebhookInfo")
    assert status == 200
    assert info["result"]["url"] == "https://example.test/hook"
    assert info["result"]["allowed_updates"] == list(allowed)
    assert info["result"]["pending_update_count"] == 0
    assert telegram.requests["getMe"] == telegram.requests["setWebhook"] == 1


async def test_an_unknown_token_is_refused_as_credentials(adapter: TelegramAdapter) -> None:
    with pytest.raises(CredentialsRefused, match="401 Unauthorized"):
        await adapter.connect({"bot_token": OTHER_TOKEN}, "https://example.test/hook", SECRET)


async def test_disconnect_deletes_the_webhook(
    telegram: FakeTelegram, adapter: TelegramAdapter, http: aiohttp.ClientSession
) -> None:
    await adapter.connect({"bot_token": TOKEN}, "https://example.test/hook", SECRET)

    await adapter.disconnect(ACCOUNT)

    assert telegram.webhook(TOKEN) is None
    status, again = await call(http, telegram, "deleteWebhook")
    assert (status, again["description"]) == (200, "Webhook is already deleted")


@pytest.mark.parametrize(
    ("params", "description"),
    [
        ({"url": "https://x.test/h", "secret_token": "has space"}, "contains unallowed characters"),
        ({"url": "https://x.test/h", "secret_token": "dots.are.not"}, "unallowed characters"),
        ({"url": "https://x.test/h", "secret_token": "a" * 257}, "secret token is too long"),
        ({"url": ""}, "bad webhook: "),
        ({}, "bad webhook: "),
        ({"url": "ftp://x.test/h"}, "invalid webhook URL specified"),
    ],
)
async def test_set_webhook_refuses_what_telegram_refuses(
    telegram: FakeTelegram,
    http: aiohttp.ClientSession,
    params: dict[str, Any],
    description: str,
) -> None:
    status, answer = await call(http, telegram, "setWebhook", **params)

    assert status == 400
    assert answer["ok"] is False
    assert answer["error_code"] == 400
    assert answer["description"].startswith("Bad Request: ")
    assert description in answer["description"]
    assert telegram.webhook(TOKEN) is None


async def test_a_256_character_secret_is_accepted(
    telegram: FakeTelegram, http: aiohttp.ClientSession
) -> None:
    status, answer = await call(
        http, telegram, "setWebhook", url="https://x.test/h", secret_token="A-_9" * 64
    )

    assert (status, answer) == (200, {"ok": True, "result": True, "description": "Webhook was set"})
    webhook = telegram.webhook(TOKEN)
    assert webhook is not None
    assert webhook.secret_token == "A-_9" * 64


# --- requests in general ---------------------------------------------------------------------


async def test_tokens_and_methods_are_checked_in_telegrams_envelope(
    telegram: FakeTelegram, http: aiohttp.ClientSession
) -> None:
    assert await call(http, telegram, "getMe", token=OTHER_TOKEN) == (
        401,
        {"ok": False, "error_code": 401, "description": "Unauthorized"},
    )
    assert await call(http, telegram, "sendTelepathy") == (
        404,
        {"ok": False, "error_code": 404, "description": "Not Found"},
    )
    assert telegram.requests == {"getMe": 1, "sendTelepathy": 1}


async def test_methods_are_case_insensitive_and_read_forms_and_query_strings(
    telegram: FakeTelegram, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{telegram.url}/bot{TOKEN}/GETME") as response:
        me = await response.json()
    form = {"chat_id": str(USER), "text": "from a form"}
    async with http.post(f"{telegram.url}/bot{TOKEN}/sendmessage", data=form) as response:
        sent_form = await response.json()
    query = {"chat_id": str(USER), "text": "from a query"}
    async with http.get(f"{telegram.url}/bot{TOKEN}/SendMessage", params=query) as response:
        sent_query = await response.json()

    assert me["result"] == {
        "id": updates.BOT_ID,
        "is_bot": True,
        "first_name": "Switchboard",
        "username": updates.BOT_USERNAME,
        "can_join_groups": True,
        "can_read_all_group_messages": False,
        "supports_inline_queries": False,
        "can_connect_to_business": False,
        "has_main_web_app": False,
    }
    assert sent_form["result"]["text"] == "from a form"
    assert sent_query["result"]["text"] == "from a query"
    assert [sent.text for sent in telegram.sent()] == ["from a form", "from a query"]
    assert telegram.requests == {"getMe": 1, "sendMessage": 2}


# --- sending ---------------------------------------------------------------------------------


async def test_send_records_the_message_and_numbers_it_per_chat(
    telegram: FakeTelegram, adapter: TelegramAdapter, clock: Clock
) -> None:
    first = await adapter.send(ACCOUNT, text(body="one"))
    second = await adapter.send(ACCOUNT, text(body="two"))
    elsewhere = await adapter.send(ACCOUNT, text(chat_id="515151", body="three"))

    assert (first.platform_ids, second.platform_ids, elsewhere.platform_ids) == (
        ("1",),
        ("2",),
        ("1",),
    )
    [one, two] = telegram.sent(TOKEN, USER)
    assert (one.method, one.chat_id, one.text, one.time) == ("sendMessage", USER, "one", clock.now)
    assert one.params == {"chat_id": USER, "text": "one"}
    assert one.result["chat"] == {"id": USER, "type": "private"}
    assert one.result["from"]["id"] == updates.BOT_ID
    assert two.message_id == 2
    assert telegram.sent(chat_id="515151")[0].text == "three"


async def test_text_over_4096_characters_is_refused_for_good(
    telegram: FakeTelegram, adapter: TelegramAdapter, clock: Clock
) -> None:
    with pytest.raises(SendFailed) as refused:
        await adapter.send(ACCOUNT, text(body="x" * 4097))

    assert refused.value.permanent
    assert refused.value.reason == "Telegram sendMessage: 400 Bad Request: message is too long"
    # Characters are code points: 4,096 emoji (8,192 UTF-16 units) still fit.
    clock.now += 10
    await adapter.send(ACCOUNT, text(body="😀" * 4096))
    assert [len(sent.text or "") for sent in telegram.sent()] == [4096]


@pytest.mark.parametrize("body", ["", "  \n "])
async def test_empty_text_is_refused(
    telegram: FakeTelegram, http: aiohttp.ClientSession, body: str
) -> None:
    status, answer = await call(http, telegram, "sendMessage", chat_id=USER, text=body)

    assert (status, answer["description"]) == (400, "Bad Request: message text is empty")


async def test_a_blocked_user_and_an_unknown_chat_fail_for_good(
    telegram: FakeTelegram, adapter: TelegramAdapter
) -> None:
    telegram.block(TOKEN, USER)
    telegram.forget_chat(777)

    with pytest.raises(SendFailed) as blocked:
        await adapter.send(ACCOUNT, text())
    with pytest.raises(SendFailed) as missing:
        await adapter.send(ACCOUNT, text(chat_id="777"))

    assert blocked.value.permanent
    assert blocked.value.reason.endswith("403 Forbidden: bot was blocked by the user")
    assert missing.value.permanent
    assert missing.value.reason.endswith("400 Bad Request: chat not found")
    assert telegram.sent() == []
    assert telegram.requests["sendMessage"] == 2


async def test_a_group_that_removed_the_bot_says_so(
    telegram: FakeTelegram, http: aiohttp.ClientSession
) -> None:
    telegram.block(telegram.bot(TOKEN), GROUP)

    status, answer = await call(http, telegram, "sendMessage", chat_id=GROUP, text="hi")

    assert (status, answer["description"]) == (
        403,
        "Forbidden: bot was kicked from the supergroup chat",
    )


@pytest.mark.parametrize(
    ("parse_mode", "body", "description"),
    [
        (
            "MarkdownV2",
            "Version 1.0",
            "can't parse entities: Character '.' is reserved and must be escaped with the "
            "preceding '\\'",
        ),
        ("MarkdownV2", "*bold", "can't parse entities: Can't find end of Bold entity at byte "),
        ("MarkdownV2", "a | b", "Character '|' is reserved"),
        ("MarkdownV2", "[link](https://x.test", "Can't find end of a URL at byte offset 7"),
        ("HTML", "hi <blink>x</blink>", 'Unsupported start tag "blink" at byte offset 3'),
        ("HTML", "1 < 2", 'Unsupported start tag "" at byte offset 2'),
        (
            "HTML",
            "<b>bold</i>",
            'Unmatched end tag at byte offset 7, expected "</b>", found "</i>"',
        ),
        ("HTML", "<b>bold", 'Can\'t find end tag corresponding to start tag "b"'),
        ("HTML", "<span>x</span>", 'Tag "span" must have class "tg-spoiler"'),
        ("Markdown", "*bold", "Can't find end of the entity starting at byte offset 0"),
        ("markdown3", "hi", "unsupported parse_mode"),
    ],
)
async def test_markup_telegram_cannot_parse_is_refused(
    telegram: FakeTelegram,
    http: aiohttp.ClientSession,
    parse_mode: str,
    body: str,
    description: str,
) -> None:
    status, answer = await call(
        http, telegram, "sendMessage", chat_id=USER, text=body, parse_mode=parse_mode
    )

    assert status == 400
    assert answer["description"].startswith("Bad Request: ")
    assert description in answer["description"]
    assert telegram.sent() == []


@pytest.mark.parametrize(
    ("parse_mode", "body", "shown"),
    [
        ("MarkdownV2", "Version 1\\.0 is *out* \\(at last\\)\\!", "Version 1.0 is out (at last)!"),
        ("MarkdownV2", "see [the docs](https://x.test/a_(b\\))", "see the docs"),
        ("MarkdownV2", "```python\nprint(1 + 2)\n```", "print(1 + 2)"),
        ("MarkdownV2", ">quoted\n>lines", "quoted\nlines"),
        ("HTML", '<b>bold</b> &amp; <a href="https://x.test?a=1&b=2">link</a>', "bold & link"),
        ("HTML", '<span class="tg-spoiler">x</span> AT&T &#128512;', "x AT&T 😀"),
        ("Markdown", "*bold* and _it_ [x](https://x.test)", "bold and it x"),
        ("None", "*as is*", "*as is*"),
    ],
)
async def test_markup_telegram_parses_is_shown_as_text(
    telegram: FakeTelegram, http: aiohttp.ClientSession, parse_mode: str, body: str, shown: str
) -> None:
    status, answer = await call(
        http, telegram, "sendMessage", chat_id=USER, text=body, parse_mode=parse_mode
    )

    assert status == 200, answer
    assert answer["result"]["text"] == shown
    assert telegram.sent()[0].text == body


async def test_a_reply_needs_the_message_unless_told_to_send_anyway(
    telegram: FakeTelegram,
    adapter: TelegramAdapter,
    http: aiohttp.ClientSession,
    inbox: Inbox,
    clock: Clock,
) -> None:
    await adapter.connect({"bot_token": TOKEN}, inbox.url, SECRET)
    await telegram.deliver(TOKEN, updates.text(1, USER, USER, "where is my order?", 10))

    receipt = await adapter.send(ACCOUNT, text(body="on its way", reply_to="10"))
    clock.now += 10
    # The adapter allows sending without the reply, so a message that is gone does not fail it.
    await adapter.send(ACCOUNT, text(body="still here", reply_to="99"))
    status, strict = await call(
        http, telegram, "sendMessage", chat_id=USER, text="x", reply_parameters={"message_id": 99}
    )

    assert receipt.platform_ids == ("11",)  # after the user's message 10
    replied, unreplied = telegram.sent()
    assert replied.result["reply_to_message"]["text"] == "where is my order?"
    assert "reply_to_message" not in unreplied.result
    assert (status, strict["description"]) == (400, "Bad Request: message to be replied not found")


# --- rate limits -----------------------------------------------------------------------------


async def test_a_chat_takes_a_burst_then_one_message_a_second(
    telegram: FakeTelegram, adapter: TelegramAdapter, clock: Clock
) -> None:
    for _ in range(3):
        await adapter.send(ACCOUNT, text())

    with pytest.raises(SendFailed) as flooded:
        await adapter.send(ACCOUNT, text(body="too soon"))
    await adapter.send(ACCOUNT, text(chat_id="515151", body="another chat"))
    clock.now += 1
    await adapter.send(ACCOUNT, text(body="in time"))

    assert not flooded.value.permanent
    assert flooded.value.retry_after_s == 1.0
    assert flooded.value.reason == "Telegram sendMessage: 429 Too Many Requests: retry after 1"
    assert [sent.text for sent in telegram.sent()] == [
        "hello",
        "hello",
        "hello",
        "another chat",
        "in time",
    ]
    assert telegram.requests["sendMessage"] == 6


async def test_a_429_carries_retry_after_in_the_body_and_the_header(
    http: aiohttp.ClientSession, clock: Clock
) -> None:
    async with FakeTelegram(chat_burst=1, chat_per_s=0.25, clock=clock) as telegram:
        telegram.add_bot(TOKEN, updates.BOT_ID, updates.BOT_USERNAME)
        url = f"{telegram.url}/bot{TOKEN}/sendMessage"
        await call(http, telegram, "sendMessage", chat_id=USER, text="first")
        clock.now += 1
        async with http.post(url, json={"chat_id": USER, "text": "second"}) as response:
            status, header, answer = response.status, response.headers, await response.json()

    assert status == 429
    assert header["Retry-After"] == "3"
    assert answer == {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 3",
        "parameters": {"retry_after": 3},
    }


async def test_a_bot_sends_at_most_30_messages_a_second_over_all_chats(
    telegram: FakeTelegram, adapter: TelegramAdapter, clock: Clock
) -> None:
    for chat in range(1, 31):
        await adapter.send(ACCOUNT, text(chat_id=str(chat)))

    with pytest.raises(SendFailed) as flooded:
        await adapter.send(ACCOUNT, text(chat_id="31"))
    clock.now += 1 / 30
    await adapter.send(ACCOUNT, text(chat_id="31"))

    assert flooded.value.retry_after_s == 1.0
    assert len(telegram.sent()) == 31


async def test_a_group_takes_20_messages_a_minute(
    http: aiohttp.ClientSession, clock: Clock
) -> None:
    async with FakeTelegram(chat_burst=100, clock=clock) as telegram:
        telegram.add_bot(TOKEN, updates.BOT_ID, updates.BOT_USERNAME)
        for _ in range(20):
            assert (await call(http, telegram, "sendMessage", chat_id=GROUP, text="x"))[0] == 200
        status, answer = await call(http, telegram, "sendMessage", chat_id=GROUP, text="x")

    assert (status, answer["parameters"]) == (429, {"retry_after": 3})


# --- failures the test switches on -----------------------------------------------------------


async def test_failures_are_transient_and_counted(
    telegram: FakeTelegram, adapter: TelegramAdapter
) -> None:
    telegram.fail_next("sendMessage", 2, status=502)
    telegram.fail_next("sendmessage", status=429, retry_after=7)

    errors = []
    for _ in range(3):
        with pytest.raises(SendFailed) as failed:
            await adapter.send(ACCOUNT, text())
        errors.append(failed.value)
    await adapter.send(ACCOUNT, text(body="through"))

    assert [(e.permanent, e.retry_after_s) for e in errors] == [
        (False, None),
        (False, None),
        (False, 7.0),
    ]
    assert errors[0].reason == "Telegram sendMessage: 502 Bad Gateway"
    assert [sent.text for sent in telegram.sent()] == ["through"]
    assert telegram.requests["sendMessage"] == 4


async def test_a_failure_for_every_call_lasts_until_healed(
    telegram: FakeTelegram, adapter: TelegramAdapter
) -> None:
    telegram.fail_next("getMe", None, status=500)

    for _ in range(3):
        with pytest.raises(SendFailed, match="500 Internal Server Error"):
            await adapter.connect({"bot_token": TOKEN}, "https://x.test/h", SECRET)
    telegram.heal("getMe")
    await adapter.connect({"bot_token": TOKEN}, "https://x.test/h", SECRET)

    assert telegram.requests["getMe"] == 4


async def test_a_hung_call_times_out_in_the_adapter(telegram: FakeTelegram) -> None:
    telegram.hang_next("sendMessage")
    impatient = TelegramAdapter(api_base=telegram.url, timeout_s=0.2)
    try:
        with pytest.raises(SendFailed) as hung:
            await impatient.send(ACCOUNT, text())
        await impatient.send(ACCOUNT, text(body="answered"))
    finally:
        await impatient.close()

    assert not hung.value.permanent
    assert hung.value.reason.startswith("Telegram did not answer sendMessage")
    assert [sent.text for sent in telegram.sent()] == ["answered"]


async def test_closing_ends_a_hung_call(telegram: FakeTelegram, adapter: TelegramAdapter) -> None:
    telegram.hang_next("sendMessage")
    sending = asyncio.create_task(adapter.send(ACCOUNT, text()))
    for _ in range(200):  # until the request has arrived
        if telegram.requests["sendMessage"]:
            break
        await asyncio.sleep(0.005)

    await telegram.close()

    with pytest.raises(SendFailed) as cut:
        await sending
    assert not cut.value.permanent


def test_faults_name_methods_the_fake_serves(telegram: FakeTelegram) -> None:
    with pytest.raises(ValueError, match="not a method"):
        telegram.fail_next("sendTelepathy")
    with pytest.raises(ValueError, match="4xx or 5xx"):
        telegram.fail_next("getMe", status=200)


# --- media and files -------------------------------------------------------------------------


async def test_photos_and_documents_by_url_file_id_and_upload(
    telegram: FakeTelegram, http: aiohttp.ClientSession, clock: Clock
) -> None:
    telegram.add_file("BQACAgIAAxkBAAIBaGZdocument", b"%PDF-1.7 ...")
    status, photo = await call(
        http,
        telegram,
        "sendPhoto",
        chat_id=USER,
        photo="https://x.test/cat.jpg",
        caption="a cat",
    )
    clock.now += 1
    form = aiohttp.FormData({"chat_id": str(USER), "caption": "the report"})
    form.add_field("document", b"col1,col2\n", filename="report.csv", content_type="text/csv")
    async with http.post(f"{telegram.url}/bot{TOKEN}/sendDocument", data=form) as response:
        uploaded = await response.json()
    clock.now += 1
    _, by_id = await call(
        http, telegram, "sendDocument", chat_id=USER, document="BQACAgIAAxkBAAIBaGZdocument"
    )

    assert status == 200
    sizes = photo["result"]["photo"]
    assert [size["width"] for size in sizes] == [90, 320, 800]  # largest last
    assert photo["result"]["caption"] == "a cat"
    document = uploaded["result"]["document"]
    assert (document["file_name"], document["file_size"]) == ("report.csv", 10)
    assert by_id["result"]["document"]["file_size"] == len(b"%PDF-1.7 ...")
    assert [(s.method, s.text) for s in telegram.sent()] == [
        ("sendPhoto", "a cat"),
        ("sendDocument", "the report"),
        ("sendDocument", None),
    ]
    # What the bot sent can be fetched back, as Telegram keeps it.
    _, got = await call(http, telegram, "getFile", file_id=document["file_id"])
    path = got["result"]["file_path"]
    async with http.get(f"{telegram.url}/file/bot{TOKEN}/{path}") as response:
        assert await response.read() == b"col1,col2\n"


@pytest.mark.parametrize(
    ("method", "params", "description"),
    [
        ("sendPhoto", {"photo": "https://x.test/c.jpg", "caption": "c" * 1025}, "caption is too"),
        ("sendDocument", {"document": "BQACnope"}, "wrong file identifier/HTTP URL specified"),
        ("sendPhoto", {}, "there is no photo in the request"),
        ("sendDocument", {"caption": "no file"}, "there is no document in the request"),
    ],
)
async def test_media_telegram_refuses(
    telegram: FakeTelegram,
    http: aiohttp.ClientSession,
    method: str,
    params: dict[str, Any],
    description: str,
) -> None:
    status, answer = await call(http, telegram, method, chat_id=USER, **params)

    assert status == 400
    assert description in answer["description"]


async def test_get_file_serves_registered_files_for_an_hour(
    telegram: FakeTelegram, http: aiohttp.ClientSession, clock: Clock
) -> None:
    telegram.add_file("AgACphoto", b"\xff\xd8jpeg", file_path="photos/file_7.jpg")
    telegram.add_file("BQACbig", b"\0" * (DOWNLOAD_LIMIT + 1))
    telegram.add_bot(OTHER_TOKEN, 7_000_000_002, "other_bot")
    telegram.add_file("BQACtheirs", b"private", bot=OTHER_TOKEN)
    download = f"{telegram.url}/file/bot{TOKEN}/photos/file_7.jpg"

    async with http.get(download) as response:
        before_get_file = response.status
    status, got = await call(http, telegram, "getFile", file_id="AgACphoto")
    async with http.get(download) as response:
        fetched = response.status, await response.read()
    clock.now += 3601
    async with http.get(download) as response:
        expired = response.status

    assert before_get_file == 404
    assert (status, got["result"]) == (
        200,
        {
            "file_id": "AgACphoto",
            "file_unique_id": got["result"]["file_unique_id"],
            "file_size": 6,
            "file_path": "photos/file_7.jpg",
        },
    )
    assert fetched == (200, b"\xff\xd8jpeg")
    assert expired == 404
    for file_id, description in [
        ("BQACbig", "Bad Request: file is too big"),
        ("BQACtheirs", "Bad Request: invalid file_id"),
        ("nope", "Bad Request: invalid file_id"),
    ]:
        assert (await call(http, telegram, "getFile", file_id=file_id))[1][
            "description"
        ] == description


# --- delivering updates ----------------------------------------------------------------------


async def test_deliver_posts_the_update_with_the_secret_header(
    telegram: FakeTelegram, adapter: TelegramAdapter, inbox: Inbox
) -> None:
    await adapter.connect({"bot_token": TOKEN}, inbox.url, SECRET)
    update = updates.text(501, USER, USER, "hello bot", 10)

    status = await telegram.deliver(TOKEN, update)

    assert status == 200
    [(headers, body)] = inbox.requests
    assert headers[SECRET_HEADER] == SECRET
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == update
    assert telegram.deliveries[0].body == body
    adapter.verify(ACCOUNT, headers, body)
    [message] = adapter.parse(ACCOUNT, body).messages
    assert (message.chat_id, message.external_id, message.text) == (str(USER), "10", "hello bot")
    assert message.sender_name == "Ada Lovelace"


async def test_deliver_without_or_with_a_wrong_secret_is_refused_by_the_adapter(
    telegram: FakeTelegram, adapter: TelegramAdapter, inbox: Inbox
) -> None:
    await adapter.connect({"bot_token": TOKEN}, inbox.url, SECRET)
    update = updates.text(501, USER, USER, "hello bot", 10)

    await telegram.deliver(TOKEN, update, secret=None)
    await telegram.deliver(TOKEN, update, secret="not-the-secret")

    (bare, _), (wrong, _) = inbox.requests
    assert SECRET_HEADER not in bare
    assert wrong[SECRET_HEADER] == "not-the-secret"
    for headers, body in inbox.requests:
        with pytest.raises(WebhookRefused):
            adapter.verify(ACCOUNT, headers, body)


async def test_a_webhook_without_a_secret_gets_no_header(
    telegram: FakeTelegram, http: aiohttp.ClientSession, inbox: Inbox
) -> None:
    await call(http, telegram, "setWebhook", url=inbox.url)

    await telegram.deliver(TOKEN, updates.text(1, USER, USER, "hi", 1))

    assert SECRET_HEADER not in inbox.requests[0][0]


async def test_the_exact_bytes_given_are_delivered(
    telegram: FakeTelegram, adapter: TelegramAdapter, inbox: Inbox
) -> None:
    await adapter.connect({"bot_token": TOKEN}, inbox.url, SECRET)
    update = updates.text(7, USER, USER, "spaced out", 3)
    body = json.dumps(dict(reversed(update.items())), indent=2).encode()

    await telegram.deliver(TOKEN, update, body=body)

    assert inbox.requests[0][1] == body
    assert adapter.parse(ACCOUNT, body).delivery_id == "7"


async def test_failed_deliveries_show_in_the_webhook_info(
    telegram: FakeTelegram, adapter: TelegramAdapter, inbox: Inbox, http: aiohttp.ClientSession
) -> None:
    await adapter.connect({"bot_token": TOKEN}, inbox.url, SECRET)
    update = updates.text(9, USER, USER, "hi", 1)
    inbox.status = 500

    assert await telegram.deliver(TOKEN, update) == 500
    _, failing = await call(http, telegram, "getWebhookInfo")
    inbox.status = 200
    assert await telegram.deliver(TOKEN, update) == 200
    _, healed = await call(http, telegram, "getWebhookInfo")

    assert failing["result"]["pending_update_count"] == 1
    assert failing["result"]["last_error_message"] == (
        "Wrong response from the webhook: 500 Internal Server Error"
    )
    assert healed["result"]["pending_update_count"] == 0
    assert inbox.requests[0][1] == inbox.requests[1][1]  # a redelivery repeats the bytes


async def test_deliver_sends_only_what_telegram_would(
    telegram: FakeTelegram, adapter: TelegramAdapter, inbox: Inbox
) -> None:
    with pytest.raises(RuntimeError, match="no webhook"):
        await telegram.deliver(TOKEN, updates.text(1, USER, USER, "hi", 1))
    await adapter.connect({"bot_token": TOKEN}, inbox.url, SECRET)
    with pytest.raises(ValueError, match="allowed_updates"):
        await telegram.deliver(TOKEN, {"update_id": 2, "my_chat_member": {}})
    with pytest.raises(ValueError, match="exactly one"):
        await telegram.deliver(TOKEN, {"update_id": 3})

    assert inbox.requests == []


# --- updates, as the adapter reads them --------------------------------------------------------


async def test_updates_are_shaped_as_the_adapter_expects(
    telegram: FakeTelegram, adapter: TelegramAdapter, inbox: Inbox
) -> None:
    await adapter.connect({"bot_token": TOKEN}, inbox.url, SECRET)
    sent = [
        updates.photo(1, USER, USER, 20, caption="my cat"),
        updates.document(2, USER, USER, 21, file_name="cv.pdf"),
        updates.edited_message(3, USER, USER, "hello again", 10, date=1_700_000_000),
    ]

    for update in sent:
        assert await telegram.deliver(TOKEN, update) == 200
    photo, document, edit = (adapter.parse(ACCOUNT, body).messages[0] for _, body in inbox.requests)

    largest = sent[0]["message"]["photo"][-1]
    assert [(a.kind, a.platform_ref, a.size_bytes) for a in photo.attachments] == [
        ("image", largest["file_id"], largest["file_size"])
    ]
    assert photo.text == "my cat"
    [pdf] = document.attachments
    assert (pdf.kind, pdf.filename, pdf.mime_type) == ("file", "cv.pdf", "application/pdf")
    assert (edit.kind, edit.external_id, edit.text) == ("edit", "10", "hello again")
    assert edit.sent_at == 1_700_000_060


async def test_a_button_press_is_answered_once(
    telegram: FakeTelegram, adapter: TelegramAdapter, inbox: Inbox
) -> None:
    await adapter.connect({"bot_token": TOKEN}, inbox.url, SECRET)
    update = updates.callback_query(4, USER, USER, "yes", message_id=11, query_id="q-1")
    await telegram.deliver(TOKEN, update)

    parsed = adapter.parse(ACCOUNT, inbox.requests[0][1])
    [answer] = parsed.after_ack
    await adapter.call(ACCOUNT, answer)
    with pytest.raises(SendFailed) as again:
        await adapter.call(ACCOUNT, answer)

    [postback] = parsed.messages
    assert (postback.kind, postback.text, postback.reply_to) == ("postback", "yes", "11")
    assert [(a.callback_query_id, a.text) for a in telegram.callback_answers] == [("q-1", None)]
    assert again.value.permanent
    assert "query is too old" in again.value.reason
    too_long = PlatformCall("answerCallbackQuery", {"callback_query_id": "q-1", "text": "t" * 201})
    with pytest.raises(SendFailed):
        await adapter.call(ACCOUNT, too_long)


async def test_group_messages_reach_the_bot_only_when_addressed(
    telegram: FakeTelegram, adapter: TelegramAdapter, inbox: Inbox
) -> None:
    await adapter.connect({"bot_token": TOKEN}, inbox.url, SECRET)

    await telegram.deliver(TOKEN, updates.group_mention(5, GROUP, USER, 30))
    await telegram.deliver(TOKEN, updates.text(6, GROUP, USER, "just chatting", 31, "supergroup"))
    mention, chatter = (adapter.parse(ACCOUNT, body) for _, body in inbox.requests)

    assert mention.messages[0].chat_id == str(GROUP)
    assert mention.messages[0].text.startswith(f"@{updates.BOT_USERNAME}")
    assert chatter.messages == ()
    assert chatter.ignored == "a group message not addressed to the bot"


async def test_a_mention_after_an_emoji_reaches_the_bot(
    telegram: FakeTelegram, adapter: TelegramAdapter, inbox: Inbox
) -> None:
    await adapter.connect({"bot_token": TOKEN}, inbox.url, SECRET)
    greeting = f"👋 @{updates.BOT_USERNAME} hi"

    await telegram.deliver(TOKEN, updates.group_mention(5, GROUP, USER, 30, text=greeting))

    assert adapter.parse(ACCOUNT, inbox.requests[0][1]).messages != ()


def test_update_builders_keep_telegrams_invariants() -> None:
    entities = updates.entities_of("👋 @someone /start@other_bot https://x.test/a")
    assert entities == [
        {"offset": 3, "length": 8, "type": "mention"},
        {"offset": 12, "length": 16, "type": "bot_command"},
        {"offset": 29, "length": 16, "type": "url"},
    ]
    with pytest.raises(ValueError, match="user's id"):
        updates.text(1, USER, USER + 1, "hi", 1)
    with pytest.raises(ValueError, match="negative"):
        updates.text(1, USER, USER, "hi", 1, chat_type="group")
    photo = updates.photo(1, USER, USER, 1)["message"]["photo"]
    assert [p["width"] for p in photo] == sorted(p["width"] for p in photo)
    assert len({p["file_id"] for p in photo}) == len(photo)
