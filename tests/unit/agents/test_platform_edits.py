"""A user's edit of a message on a platform: shown to operators, never a new turn."""

from __future__ import annotations

from typing import Any

from agents.message_process import plan_inbound
from core import ids
from core.channels.base import NormalizedMessage
from streams.inbound import Origin, inbound_record
from streams.records import ConversationEvent

ORIGIN = Origin("w1", "a1", "telegram", "ch_1")


def _said(external_id: str, text: str, kind: str = "message", at: float = 0.0) -> Any:
    return inbound_record(
        ORIGIN, NormalizedMessage("42", external_id, "42", text, kind=kind, sent_at=at)
    )


def test_an_edit_is_an_event_about_the_message_it_changes_and_asks_the_bot_nothing() -> None:
    table: dict[str, Any] = {}
    first = _said("7", "hello")
    plan_inbound(first, table)
    state = table[first.conversation_id]
    turns, epoch = list(state.context or []), state.epoch

    edit = _said("7", "hello there", kind="edit", at=1_700_000_100.0)
    effects = plan_inbound(edit, table)

    assert edit.message_id != first.message_id  # its own record, about the same message
    assert effects.messages == []
    assert effects.conversation is None
    [send] = effects.sends
    assert isinstance(send.record, ConversationEvent)
    event = send.record
    assert event.type == "message.edited"
    assert event.data == {
        "message_id": ids.inbound_message_id("telegram", "ch_1", "42", "7"),
        "text": "hello there",
        "edited_at": 1_700_000_100.0,
    }
    assert event.data["message_id"] == first.message_id
    assert list(state.context or []) == turns
    assert state.epoch == epoch


def test_an_edit_of_a_conversation_never_seen_changes_nothing() -> None:
    effects = plan_inbound(_said("9", "edited", kind="edit"), {})
    assert effects.sends == []
    assert effects.messages == []


def test_a_redelivered_edit_is_the_same_record() -> None:
    again = _said("7", "x", kind="edit", at=5.0).message_id
    assert _said("7", "x", kind="edit", at=5.0).message_id == again
    assert _said("7", "y", kind="edit", at=6.0).message_id != again  # a later edit is another
