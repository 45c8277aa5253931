from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError, UnknownTopicOrPartitionError
from pymongo.errors import AutoReconnect, DuplicateKeyError

from agents import failures
from agents.failures import RetryPolicy, is_transient
from streams.records import AgentRequest, ConversationCommand, UndecodableRecord, encode


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
        self.message = SimpleNamespace(value=value, topic="agent.requests")


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
