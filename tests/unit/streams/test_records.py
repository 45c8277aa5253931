from __future__ import annotations

from typing import Any

import pytest

from streams.records import (
    ConversationCommand,
    InboundMessage,
    UndecodableRecord,
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
