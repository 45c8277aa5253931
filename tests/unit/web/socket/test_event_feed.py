"""The operators' feed: which events reach which /inbox rooms, and what they look like there."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from core.settings import Settings
from streams.records import ConversationEvent, InboundMessage, encode
from web.socket.event_feed import EventFeed, rooms_of, view_of


def event(**changes: Any) -> ConversationEvent:
    fields: dict[str, Any] = {
        "message_id": "ev_1", "conversation_id": "cv_1", "workspace_id": "ws_1",
        "application_id": "app_1", "channel": "telegram", "channel_id": "ch_1", "chat_id": "42",
        "created_at": 1700000000.5, "trace_id": "tr_1", "type": "message.created",
        "subject_id": "in_1", "mode": "bot", "data": {"text": "hello"},
    }  # fmt: skip
    return ConversationEvent(**{**fields, **changes})


class Recorder:
    """An emit function that remembers what it was asked to push."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.calls: list[tuple[dict[str, Any], list[str]]] = []
        self._error = error

    async def __call__(self, view: dict[str, Any], rooms: list[str]) -> None:
        self.calls.append((view, rooms))
        if self._error is not None:
            raise self._error


def test_an_event_reaches_its_workspace_application_and_conversation() -> None:
    assert rooms_of(event()) == ["workspace:ws_1", "application:app_1", "conversation:cv_1"]


def test_the_view_is_what_docs_realtime_describes() -> None:
    assert view_of(event()) == {
        "id": "ev_1",
        "type": "message.created",
        "conversation_id": "cv_1",
        "application_id": "app_1",
        "channel": "telegram",
        "subject_id": "in_1",
        "mode": "bot",
        "data": {"text": "hello"},
        "created_at": 1700000000.5,
    }


def test_an_event_without_data_has_an_empty_object() -> None:
    assert view_of(event(data=None))["data"] == {}


async def test_an_event_is_emitted_to_its_rooms_with_its_view() -> None:
    emit = Recorder()
    await EventFeed(Settings(), emit)._push(encode(event()))
    assert emit.calls == [(view_of(event()), rooms_of(event()))]


@pytest.mark.parametrize("kind", ["turn.completed", "turn.failed"])
async def test_pipeline_internal_events_are_not_emitted(kind: str) -> None:
    emit = Recorder()
    await EventFeed(Settings(), emit)._push(encode(event(type=kind)))
    assert emit.calls == []


@pytest.mark.parametrize("raw", [None, b"", b"not json", b"[1, 2]", b'{"no": "namespace"}'])
async def test_undecodable_bytes_are_skipped(raw: bytes | None) -> None:
    emit = Recorder()
    await EventFeed(Settings(), emit)._push(raw)
    assert emit.calls == []


async def test_a_record_that_is_not_an_event_is_skipped() -> None:
    message = InboundMessage(
        message_id="in_1", conversation_id="cv_1", workspace_id="ws_1", application_id="app_1",
        channel="telegram", text="hello",
    )  # fmt: skip
    emit = Recorder()
    await EventFeed(Settings(), emit)._push(encode(message))
    assert emit.calls == []


@pytest.mark.parametrize("error", [RedisConnectionError("redis is away"), OSError("reset")])
async def test_a_failed_emit_is_logged_not_raised(
    error: BaseException, caplog: pytest.LogCaptureFixture
) -> None:
    emit = Recorder(error)
    with caplog.at_level(logging.WARNING, logger="web.socket.event_feed"):
        await EventFeed(Settings(), emit)._push(encode(event()))
    assert len(emit.calls) == 1
    assert "could not push event ev_1" in caplog.text
