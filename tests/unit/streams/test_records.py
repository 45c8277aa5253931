from __future__ import annotations

from typing import Any

import pytest

from core.ids import answer_id
from streams.records import (
    AgentRequest,
    ConversationCommand,
    InboundMessage,
    UndecodableRecord,
    bot_answer,
    decode,
    encode,
)

ENVELOPE: dict[str, Any] = {
    "message_id": "m1",
    "conversation_id": "c1",
    "workspace_id": "w1",
    "application_id": "a1",
    "channel": "web",
}


def test_round_trip_keeps_the_record_type() -> None:
    message = InboundMessage(**ENVELOPE, text="hello")
    command = ConversationCommand(**ENVELOPE, action="takeover")
    assert decode(encode(message)) == message
    assert isinstance(decode(encode(command)), ConversationCommand)


def test_newer_fields_and_versions_still_parse() -> None:
    raw = encode(InboundMessage(**ENVELOPE, text="hi")).replace(
        b'"version":1', b'"version":2,"reaction":"thumbs-up"'
    )
    record = decode(raw)
    assert isinstance(record, InboundMessage)
    assert record.version == 2
    assert record.text == "hi"


@pytest.mark.parametrize(
    "raw",
    [
        b"\x00garbage",
        b"[1, 2]",
        b'{"message_id": "m1"}',
        b'{"__faust": {"ns": "switchboard.InboundMessage"}, "message_id": "m1"}',
        b'{"__faust": {"ns": "nope.Unknown"}, "message_id": "m1"}',
        encode(InboundMessage(**{**ENVELOPE, "workspace_id": ""})),
    ],
)
def test_poison_is_refused(raw: bytes) -> None:
    with pytest.raises(UndecodableRecord):
        decode(raw)


def test_a_bot_answer_is_the_same_for_a_retried_request() -> None:
    request = AgentRequest(**ENVELOPE, request_id="rq_1", text="hi", mode_epoch=3)
    first = bot_answer(request, "hello", created_at=1.0)
    again = bot_answer(request, "hello", created_at=2.0)
    assert first.message_id == again.message_id == answer_id("rq_1")
    assert (first.in_reply_to, first.mode_epoch, first.sender_role) == ("m1", 3, "bot")
    assert first.conversation_id == request.conversation_id
