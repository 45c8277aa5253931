from __future__ import annotations

from typing import Any

import pytest

from agents.delivery import is_stale
from agents.message_process import _apply
from core.errors import ValidationFailed
from streams.records import ConversationCommand, OutboundMessage
from tables.conversations import ConversationState

ENVELOPE: dict[str, Any] = {
    "message_id": "x1",
    "conversation_id": "c1",
    "workspace_id": "w1",
    "application_id": "a1",
    "channel": "telegram",
}


def _state(mode: str = "bot") -> ConversationState:
    return ConversationState(
        conversation_id="c1", workspace_id="w1", application_id="a1", channel="telegram", mode=mode
    )


def _command(action: str, **fields: Any) -> ConversationCommand:
    return ConversationCommand(**ENVELOPE, action=action, operator_id="op1", **fields)


def test_mode_changes_bump_the_epoch() -> None:
    state = _state()
    _apply(_command("takeover"), state)
    assert (state.mode, state.epoch, state.assignee_id) == ("human", 1, "op1")
    _apply(_command("assign", assignee_id="op2"), state)
    assert (state.mode, state.epoch, state.assignee_id) == ("human", 1, "op2")
    _apply(_command("release"), state)
    assert (state.mode, state.epoch) == ("bot", 2)
    _apply(_command("close"), state)
    assert (state.mode, state.epoch) == ("closed", 3)


def test_an_operator_reply_takes_the_conversation_from_the_bot() -> None:
    state = _state()
    _apply(_command("reply", text="hello"), state)
    assert (state.mode, state.epoch) == ("human", 1)
    assert (state.context or [])[-1] == {"role": "operator", "text": "hello", "message_id": "x1"}
    with pytest.raises(ValidationFailed):
        _apply(_command("reply"), state)


def test_only_bot_answers_of_the_current_epoch_are_delivered() -> None:
    answer = OutboundMessage(**ENVELOPE, sender_role="bot", mode_epoch=0)
    operator = OutboundMessage(**ENVELOPE, sender_role="operator", mode_epoch=0)
    state = _state()
    assert not is_stale(answer, state)
    _apply(_command("takeover"), state)
    assert is_stale(answer, state)
    assert not is_stale(operator, state)
    _apply(_command("release"), state)
    assert is_stale(answer, state), "an answer from before the takeover stays stale"
    assert is_stale(answer, None)
