from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

import pytest

from agents.delivery import is_stale
from agents.message_process import Effects, MessageProcess, _apply
from agents.runtime.batches import handle_batch
from agents.runtime.context import PipelineDeps
from core.cached.applications import UnknownApplication
from core.cached.channel_directory import check
from core.clients.database import Document
from core.errors import ValidationFailed
from streams.contract import MESSAGES_INBOUND
from streams.records import (
    ConversationCommand,
    InboundMessage,
    OutboundMessage,
    PipelineRecord,
    encode,
)
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
    _apply(_command("assign", assignee_id=""), state)  # unassigns
    assert (state.mode, state.epoch, state.assignee_id) == ("human", 1, "")
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


@dataclass
class Message:
    value: bytes
    offset: int
    topic: str = MESSAGES_INBOUND
    partition: int = 0
    key: bytes = b"c1"


@dataclass
class Event:
    message: Message


@dataclass
class Letters:
    sent: list[tuple[int, str, int]] = field(default_factory=list)

    async def __call__(self, event: Any, stage: str, error: BaseException, attempts: int) -> None:
        self.sent.append((event.message.offset, type(error).__name__, attempts))


KNOWN_CHANNELS: dict[str, Document] = {
    "ch_1": {"workspace_id": "w1", "application_id": "a1", "type": "telegram", "status": "active"},
    "ch_off": {
        "workspace_id": "w1",
        "application_id": "a1",
        "type": "telegram",
        "status": "disconnected",
    },
}


@dataclass
class Directories:
    """Application a1 of workspace w1, with its channels; counts what it is asked."""

    resolved: list[str] = field(default_factory=list)
    transient_failures: int = 0

    async def get(self, application_id: str, workspace_id: str) -> Document:
        if (application_id, workspace_id) != ("a1", "w1"):
            raise UnknownApplication(f"application {application_id} does not exist")
        return {"_id": application_id, "workspace_id": workspace_id}

    async def resolve(self, record: PipelineRecord) -> Document:
        self.resolved.append(record.channel_id)
        if self.transient_failures:
            self.transient_failures -= 1
            raise ConnectionError("redis away for a moment")
        return check(record, KNOWN_CHANNELS.get(record.channel_id))


@dataclass
class Planned(MessageProcess):
    """The stage with its writes recorded instead of applied."""

    applied: list[Effects] = field(default_factory=list)

    async def apply(self, plans: Sequence[Effects]) -> None:
        self.applied.extend(plans)


def _stage(directories: Directories) -> Planned:
    deps = SimpleNamespace(applications=directories, channels=directories)
    return Planned(cast(PipelineDeps, deps), {})


def _inbound(message_id: str, **fields: Any) -> bytes:
    return encode(
        InboundMessage(**{**ENVELOPE, "channel_id": "ch_1", **fields, "message_id": message_id})
    )


def _batch(*values: bytes) -> list[Event]:
    return [Event(Message(value, offset)) for offset, value in enumerate(values)]


def _stored(stage: Planned) -> list[str]:
    return [m["_id"] for effects in stage.applied for m in effects.messages]


async def test_messages_on_channels_they_may_not_use_are_dead_lettered_at_once() -> None:
    directories, letters = Directories(), Letters()
    stage = _stage(directories)
    batch = _batch(
        _inbound("m1"),
        _inbound("m2", channel_id="ch_unknown"),
        _inbound("m3", channel_id="ch_unknown"),
        _inbound("m4", channel_id="ch_off"),
        _inbound("m5", channel="messenger"),
        _inbound("m6"),
    )
    await handle_batch(batch, stage, letters)
    assert letters.sent == [
        (1, "UnknownChannel", 1),
        (2, "UnknownChannel", 1),
        (3, "ChannelDisconnected", 1),
        (4, "UnknownChannel", 1),
    ], "a refusal is not retried"
    assert _stored(stage) == ["m1", "m6"]
    assert stage.table["c1"].inbound_count == 2, "a refused message leaves the state alone"
    assert directories.resolved == ["ch_1", "ch_unknown", "ch_off", "ch_1"], "once per batch"


async def test_the_channel_of_an_unknown_application_is_not_looked_up() -> None:
    directories, letters = Directories(), Letters()
    await handle_batch(_batch(_inbound("m1", application_id="a9")), _stage(directories), letters)
    assert letters.sent == [(0, "UnknownApplication", 1)]
    assert directories.resolved == []


async def test_a_transient_failure_to_resolve_is_retried_not_remembered() -> None:
    directories, letters = Directories(transient_failures=1), Letters()
    stage = _stage(directories)
    await handle_batch(_batch(_inbound("m1")), stage, letters)
    assert letters.sent == []
    assert _stored(stage) == ["m1"]
    assert directories.resolved == ["ch_1", "ch_1"]


async def test_commands_name_no_channel() -> None:
    directories, letters = Directories(), Letters()
    stage = _stage(directories)
    command = encode(ConversationCommand(**{**ENVELOPE, "message_id": "k1"}, action="takeover"))
    await handle_batch(_batch(_inbound("m1"), command), stage, letters)
    assert letters.sent == []
    assert directories.resolved == ["ch_1"]
    assert stage.table["c1"].mode == "human"
