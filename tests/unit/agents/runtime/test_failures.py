from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError, UnknownTopicOrPartitionError
from pymongo.errors import AutoReconnect, DuplicateKeyError

from agents.runtime import failures
from agents.runtime.failures import RetryPolicy, _delivery_failure, is_transient
from core import ids
from streams.contract import (
    AGENT_REQUESTS,
    CONVERSATION_EVENTS,
    MESSAGES_INBOUND,
    MESSAGES_OUTBOUND,
    PLATFORM_OUTBOUND,
    dead_letter_of,
)
from streams.records import (
    AgentRequest,
    ConversationCommand,
    ConversationEvent,
    DeadLetter,
    InboundMessage,
    OutboundMessage,
    PlatformSend,
    UndecodableRecord,
    decode,
    encode,
)


def test_transient_or_not() -> None:
    assert is_transient(AutoReconnect("primary stepped down"))
    assert is_transient(KafkaTimeoutError())
    assert is_transient(UnknownTopicOrPartitionError())
    assert not is_transient(UndecodableRecord("not JSON"))
    assert not is_transient(DuplicateKeyError("dup"))
    assert not is_transient(KeyError("x"))


def test_backoff_is_bounded() -> None:
    policy = RetryPolicy(attempts=6, first_delay_s=0.2, max_delay_s=5.0)
    delays = [policy.delay(n) for n in range(1, 20)]
    assert all(0 < d <= 5.0 for d in delays)
    assert policy.delay(1) <= 0.2


class _Event:
    def __init__(self, value: bytes) -> None:
        self.message = SimpleNamespace(value=value, topic=AGENT_REQUESTS)


async def test_handle_one_works_a_record_and_dead_letters_a_poison_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    letters: list[tuple[str, int]] = []

    async def dead_letter(event: Any, stage: str, error: BaseException, attempts: int) -> None:
        letters.append((str(error), attempts))

    monkeypatch.setattr(failures, "dead_letter", dead_letter)
    worked: list[str] = []

    async def work(request: AgentRequest) -> None:
        worked.append(request.request_id)

    request = AgentRequest(
        message_id="in_1", conversation_id="cv_1", workspace_id="ws_1", application_id="app_1",
        channel="telegram", request_id="rq_1",
    )  # fmt: skip
    command = ConversationCommand(
        message_id="cmd_1", conversation_id="cv_1", workspace_id="ws_1", application_id="app_1",
        channel="telegram", action="close",
    )  # fmt: skip
    for raw in (encode(request), b"not json", encode(command)):
        await failures.handle_one(_Event(raw), "ai-agent", AgentRequest, work, lambda r: "x")
    assert worked == ["rq_1"]
    assert [attempts for _, attempts in letters] == [1, 1]
    assert "not JSON" in letters[0][0]
    assert "ConversationCommand does not belong on agent.requests" in letters[1][0]


ENVELOPE: dict[str, Any] = {
    "conversation_id": "cv_1", "workspace_id": "ws_1", "application_id": "app_1",
    "channel": "telegram", "channel_id": "ch_1", "chat_id": "42", "trace_id": "tr_1",
}  # fmt: skip


def outbound() -> OutboundMessage:
    return OutboundMessage(message_id="bt_1", **ENVELOPE, text="hello")


def letter(topic: str, reason: str = "telegram refused the message") -> DeadLetter:
    return DeadLetter(
        source_topic=topic, partition=3, offset=17, key="cv_1", reason=reason,
        error_type="DeliveryRefused", attempts=6, failed_at=1700000000.0, value="{}",
        stage="delivery",
    )  # fmt: skip


def test_an_undelivered_outbound_message_becomes_a_delivery_failed_event() -> None:
    failed = _delivery_failure(MESSAGES_OUTBOUND, encode(outbound()), letter(MESSAGES_OUTBOUND))
    assert isinstance(failed, ConversationEvent)
    assert failed.type == "delivery.failed"
    assert failed.message_id == ids.event_id("bt_1", "delivery.failed")
    assert failed.subject_id == "bt_1"
    assert failed.data == {
        "stage": "delivery",
        "reason": "telegram refused the message",
        "error_type": "DeliveryRefused",
        "attempts": 6,
        "dead_letter_topic": dead_letter_of(MESSAGES_OUTBOUND),
    }
    assert {name: getattr(failed, name) for name in ENVELOPE} == ENVELOPE
    assert failed.created_at > 0
    assert isinstance(decode(encode(failed)), ConversationEvent)


def test_the_same_failure_has_the_same_event_id() -> None:
    first = _delivery_failure(MESSAGES_OUTBOUND, encode(outbound()), letter(MESSAGES_OUTBOUND))
    again = _delivery_failure(MESSAGES_OUTBOUND, encode(outbound()), letter(MESSAGES_OUTBOUND))
    assert first is not None
    assert again is not None
    assert first.message_id == again.message_id


def test_an_unsent_platform_send_becomes_a_delivery_failed_event() -> None:
    send = PlatformSend(message_id="bt_2", **ENVELOPE, text="hello")
    failed = _delivery_failure(PLATFORM_OUTBOUND, encode(send), letter(PLATFORM_OUTBOUND))
    assert failed is not None
    assert (failed.type, failed.subject_id) == ("delivery.failed", "bt_2")
    assert failed.message_id == ids.event_id("bt_2", "delivery.failed")
    assert failed.data is not None
    assert failed.data["dead_letter_topic"] == dead_letter_of(PLATFORM_OUTBOUND)


def test_a_long_reason_is_cut_short_in_the_event() -> None:
    long = letter(MESSAGES_OUTBOUND, reason="x" * 2000)
    failed = _delivery_failure(MESSAGES_OUTBOUND, encode(outbound()), long)
    assert failed is not None
    assert failed.data is not None
    assert failed.data["reason"] == "x" * 500


def test_an_inbound_message_is_not_a_delivery_failure() -> None:
    message = InboundMessage(message_id="in_1", **ENVELOPE, text="hi")
    inbound = letter(MESSAGES_INBOUND)
    assert _delivery_failure(MESSAGES_INBOUND, encode(message), inbound) is None


@pytest.mark.parametrize("value", [b"not json", b"{}", b"", None, 42])
def test_an_undecodable_outbound_value_gives_no_event(value: object) -> None:
    assert _delivery_failure(MESSAGES_OUTBOUND, value, letter(MESSAGES_OUTBOUND)) is None


class _Topic:
    """A topic whose ``send`` resolves at once, as a Faust topic's does once the broker acks."""

    def __init__(self, name: str, sent: list[tuple[str, str, bytes]]) -> None:
        self._name = name
        self._sent = sent

    async def send(self, key: str, value: bytes) -> asyncio.Future[None]:
        self._sent.append((self._name, key, value))
        acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        acked.set_result(None)
        return acked


def _failed_event(topic: str, value: bytes) -> Any:
    message = SimpleNamespace(topic=topic, partition=3, offset=17, key=b"cv_1", value=value)
    return SimpleNamespace(message=message)


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, bytes]]:
    sent: list[tuple[str, str, bytes]] = []
    dead_letters = {
        f"{topic}.dlq": _Topic(f"{topic}.dlq", sent)
        for topic in (MESSAGES_INBOUND, MESSAGES_OUTBOUND)
    }
    monkeypatch.setattr(failures, "DEAD_LETTERS", dead_letters)
    monkeypatch.setattr(failures, "conversation_events", _Topic(CONVERSATION_EVENTS, sent))
    return sent


async def test_dead_letter_of_an_outbound_message_tells_operators(
    sent: list[tuple[str, str, bytes]],
) -> None:
    raw = encode(outbound())
    await failures.dead_letter(
        _failed_event(MESSAGES_OUTBOUND, raw), "delivery", RuntimeError("refused"), 6
    )
    assert [(topic, key) for topic, key, _ in sent] == [
        (dead_letter_of(MESSAGES_OUTBOUND), "cv_1"),
        (CONVERSATION_EVENTS, "cv_1"),
    ]
    dead = json.loads(sent[0][2])
    assert (dead["source_topic"], dead["partition"], dead["offset"]) == (MESSAGES_OUTBOUND, 3, 17)
    assert (dead["key"], dead["value"], dead["stage"]) == ("cv_1", raw.decode(), "delivery")
    assert (dead["reason"], dead["error_type"], dead["attempts"]) == ("refused", "RuntimeError", 6)
    failed = decode(sent[1][2])
    assert isinstance(failed, ConversationEvent)
    assert (failed.type, failed.subject_id) == ("delivery.failed", "bt_1")
    assert failed.data is not None
    assert (failed.data["reason"], failed.data["attempts"]) == ("refused", 6)


async def test_dead_letter_of_an_inbound_message_only_dead_letters(
    sent: list[tuple[str, str, bytes]],
) -> None:
    message = InboundMessage(message_id="in_1", **ENVELOPE, text="hi")
    await failures.dead_letter(
        _failed_event(MESSAGES_INBOUND, encode(message)), "process", RuntimeError("bad"), 1
    )
    assert [(topic, key) for topic, key, _ in sent] == [(dead_letter_of(MESSAGES_INBOUND), "cv_1")]


async def test_dead_letter_of_an_undecodable_outbound_value_only_dead_letters(
    sent: list[tuple[str, str, bytes]],
) -> None:
    poison = _failed_event(MESSAGES_OUTBOUND, b"not json")
    await failures.dead_letter(poison, "delivery", UndecodableRecord("not JSON"), 1)
    assert [(topic, key) for topic, key, _ in sent] == [(dead_letter_of(MESSAGES_OUTBOUND), "cv_1")]
