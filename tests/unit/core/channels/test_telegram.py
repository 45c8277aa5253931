"""The Telegram adapter's reading of webhook requests: verified on raw bytes, then normalized."""

from __future__ import annotations

import json
from typing import Any

import pytest

from core.channels.base import ChannelAccount, MalformedWebhook, WebhookRefused
from core.channels.telegram import SECRET_HEADER, TelegramAdapter

ACCOUNT = ChannelAccount(
    channel_id="ch_1",
    type="telegram",
    workspace_id="ws",
    application_id="app",
    credentials={"bot_token": "123456:" + "A" * 35},
    webhook_secret="s3cret_token-1",
    config={"bot_id": "123456", "bot_username": "ShopBot"},
)
ADAPTER = TelegramAdapter("http://127.0.0.1:1")
USER = {"id": 42, "is_bot": False, "first_name": "Ada", "last_name": "L"}


def _body(update: dict[str, Any]) -> bytes:
    return json.dumps(update).encode()


def _message(text: str, chat_type: str = "private", **extra: Any) -> dict[str, Any]:
    chat = {"id": 42 if chat_type == "private" else -1001, "type": chat_type}
    return {"message_id": 7, "date": 1_700_000_000, "chat": chat, "from": USER, "text": text}


def test_the_secret_header_must_match_exactly() -> None:
    ADAPTER.verify(ACCOUNT, {SECRET_HEADER: "s3cret_token-1"}, b"{}")
    ADAPTER.verify(ACCOUNT, {SECRET_HEADER.lower(): "s3cret_token-1"}, b"{}")  # any case
    for headers in ({}, {SECRET_HEADER: "s3cret_token-2"}, {SECRET_HEADER: ""}):
        with pytest.raises(WebhookRefused):
            ADAPTER.verify(ACCOUNT, headers, b"{}")
    unset = ChannelAccount(**{**ACCOUNT.__dict__, "webhook_secret": ""})
    with pytest.raises(WebhookRefused):
        ADAPTER.verify(unset, {SECRET_HEADER: ""}, b"{}")


def test_a_text_message() -> None:
    parsed = ADAPTER.parse(ACCOUNT, _body({"update_id": 10, "message": _message("hi")}))
    assert parsed.delivery_id == "10"
    [message] = parsed.messages
    assert (message.chat_id, message.external_id, message.sender_id, message.text) == (
        "42",
        "7",
        "42",
        "hi",
    )
    assert message.sender_name == "Ada L"
    assert message.kind == "message"


def test_photos_and_documents_are_references_with_the_caption_as_text() -> None:
    photo = {
        **_message(""),
        "caption": "look",
        "photo": [
            {"file_id": "small", "file_unique_id": "s", "width": 90, "height": 90},
            {"file_id": "big", "file_unique_id": "b", "width": 800, "height": 800, "file_size": 9},
        ],
    }
    photo.pop("text")
    [message] = ADAPTER.parse(ACCOUNT, _body({"update_id": 11, "message": photo})).messages
    assert message.text == "look"
    assert [(a.kind, a.platform_ref, a.size_bytes) for a in message.attachments] == [
        ("image", "big", 9)
    ]
    file = {"file_id": "d", "file_unique_id": "u", "file_name": "a.pdf"}
    document = {**_message(""), "document": {**file, "mime_type": "application/pdf"}}
    [message] = ADAPTER.parse(ACCOUNT, _body({"update_id": 12, "message": document})).messages
    assert [(a.kind, a.filename, a.mime_type) for a in message.attachments] == [
        ("file", "a.pdf", "application/pdf")
    ]


def test_a_callback_query_is_a_postback_answered_after_the_ack() -> None:
    query = {
        "id": "4382",
        "from": USER,
        "message": _message("pick one"),
        "chat_instance": "x",
        "data": "size:L",
    }
    parsed = ADAPTER.parse(ACCOUNT, _body({"update_id": 13, "callback_query": query}))
    [message] = parsed.messages
    assert (message.kind, message.text, message.chat_id) == ("postback", "size:L", "42")
    assert [(c.method, dict(c.payload)) for c in parsed.after_ack] == [
        ("answerCallbackQuery", {"callback_query_id": "4382"})
    ]


def test_an_edit_is_an_edit_of_the_same_message() -> None:
    edited = {**_message("hi again"), "edit_date": 1_700_000_100}
    [message] = ADAPTER.parse(ACCOUNT, _body({"update_id": 14, "edited_message": edited})).messages
    assert (message.kind, message.external_id, message.sent_at) == ("edit", "7", 1_700_000_100)


@pytest.mark.parametrize(
    ("text", "entities", "addressed"),
    [
        ("hello all", [], False),
        ("@ShopBot hi", [{"type": "mention", "offset": 0, "length": 8}], True),
        ("@OtherBot hi", [{"type": "mention", "offset": 0, "length": 9}], False),
        ("/help", [{"type": "bot_command", "offset": 0, "length": 5}], True),
        ("/help@shopbot", [{"type": "bot_command", "offset": 0, "length": 13}], True),
        ("/help@OtherBot", [{"type": "bot_command", "offset": 0, "length": 14}], False),
    ],
)
def test_a_group_message_is_taken_only_when_it_addresses_the_bot(
    text: str, entities: list[dict[str, Any]], addressed: bool
) -> None:
    message = {**_message(text, "supergroup"), "entities": entities}
    parsed = ADAPTER.parse(ACCOUNT, _body({"update_id": 15, "message": message}))
    assert bool(parsed.messages) is addressed
    assert bool(parsed.ignored) is not addressed


def test_a_reply_to_the_bot_in_a_group_addresses_it() -> None:
    reply = {"message_id": 3, "date": 1, "chat": {"id": -1001, "type": "group"},
             "from": {"id": 123456, "is_bot": True, "first_name": "Shop"}}  # fmt: skip
    message = {**_message("yes please", "group"), "reply_to_message": reply}
    [taken] = ADAPTER.parse(ACCOUNT, _body({"update_id": 16, "message": message})).messages
    assert taken.reply_to == "3"


def test_other_update_kinds_are_ignored_not_refused() -> None:
    parsed = ADAPTER.parse(ACCOUNT, _body({"update_id": 17, "my_chat_member": {}}))
    assert parsed.messages == ()
    assert "my_chat_member" in parsed.ignored


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[1, 2]", b'{"message": {}}', b'{"update_id": "1"}',
     b'{"update_id": 1, "message": {"text": "no chat"}}', b"[" * 100_000],
)  # fmt: skip
def test_what_is_not_an_update_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedWebhook):
        ADAPTER.parse(ACCOUNT, body)
