"""The AI stage in a real worker, against a strict fake OpenAI-compatible server."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner

from core.ai.llm import DEMO_PREFIX
from core.ids import new_id
from core.settings import Settings
from streams.contract import CONVERSATION_EVENTS, MESSAGES_INBOUND, PARTITIONS
from streams.replay import conversation_records
from tests.fakes.llm import Error, FakeLLM, Hang, Text
from tests.integration.pipeline_harness import (
    Collector,
    Conversation,
    Worker,
    create_application,
    documents,
    running,
    send_all,
)


@pytest.fixture(scope="module")
def ai_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    # The fake model listens on loopback: a chatbot's own URL may reach it only when allowed.
    env = {"SWITCHBOARD_LLM_ALLOW_NETWORKS": "127.0.0.1/32"}
    with running(Worker(tmp_path_factory.mktemp("ai"), "ai-worker", ai=True, env=env)) as worker:
        yield worker


def _chatbot(llm: FakeLLM, **llm_fields: Any) -> dict[str, Any]:
    return {
        "instructions": "Answer in one sentence.",
        "fallback_reply": "We will get back to you shortly.",
        "llm": {"base_url": llm.base_url, "api_key": "test-key", "model": "fake-model",
                **llm_fields},
    }  # fmt: skip


async def _ask(settings: Settings, chatbot: dict[str, Any] | None, text: str) -> tuple[
    Conversation, list[str]
]:  # fmt: skip
    workspace = new_id("ws")
    fields = {"prompt": "You help customers of a shoe shop."}
    if chatbot is not None:
        fields["chatbot"] = chatbot  # type: ignore[assignment]
    application = await create_application(settings, workspace, **fields)
    conversation = Conversation(workspace, application, "ai")
    async with Collector(settings, {conversation.id}) as collector:
        await send_all(settings, MESSAGES_INBOUND, [conversation.message("1", text)])
        await collector.wait_for(1, within_s=60)
        await asyncio.sleep(1)  # a second answer, if one were coming, would arrive by now
    return conversation, [s.text for s in collector.sends[conversation.id]]


async def _turn_events(settings: Settings, conversation: Conversation) -> list[dict[str, Any]]:
    records = await conversation_records(settings, conversation.id, topics=[CONVERSATION_EVENTS])
    return [
        r.value
        for r in records
        if isinstance(r.value, dict) and str(r.value.get("type", "")).startswith("turn.")
    ]


async def test_the_model_answers_with_the_prompt_and_context(
    settings: Settings, ai_worker: Worker
) -> None:
    async with FakeLLM() as llm:
        llm.script(Text("We have size 42 in stock."))
        conversation, answers = await _ask(settings, _chatbot(llm), "Do you have size 42?")
    assert answers == ["We have size 42 in stock."]
    (request,) = llm.requests
    assert request["messages"][0]["role"] == "system"
    assert "shoe shop" in request["messages"][0]["content"]
    assert "one sentence" in request["messages"][0]["content"]
    assert request["messages"][-1] == {"role": "user", "content": "Do you have size 42?"}
    (turn,) = await _turn_events(settings, conversation)
    assert turn["type"] == "turn.completed"
    assert turn["data"]["model"] == "fake-model"
    assert turn["data"]["completion_tokens"] == 6
    assert turn["data"]["messages"] == request["messages"]
    (usage,) = await documents(settings, "llm_usage", conversation.workspace_id)
    assert (usage["application_id"], usage["conversation_id"]) == (
        conversation.application_id,
        conversation.id,
    )
    assert (usage["model"], usage["completion_tokens"]) == ("fake-model", 6)
    assert usage["prompt_tokens"] > 0


async def test_two_server_errors_then_one_answer(settings: Settings, ai_worker: Worker) -> None:
    async with FakeLLM() as llm:
        llm.script(Error(500), Error(500), Text("Third time lucky."))
        conversation, answers = await _ask(settings, _chatbot(llm), "hello")
    assert answers == ["Third time lucky."]
    assert len(llm.requests) == 3
    (turn,) = await _turn_events(settings, conversation)
    assert turn["data"]["attempts"] == 3


async def test_a_hanging_model_gets_the_fallback_reply(
    settings: Settings, ai_worker: Worker
) -> None:
    async with FakeLLM() as llm:
        llm.script(Hang(), Hang(), Hang())
        conversation, answers = await _ask(settings, _chatbot(llm, timeout_s=0.5), "hello?")
    assert answers == ["We will get back to you shortly."]
    (turn,) = await _turn_events(settings, conversation)
    assert turn["type"] == "turn.failed"
    assert "APITimeoutError" in turn["data"]["failure"]


async def test_without_a_model_the_demo_answers(settings: Settings, ai_worker: Worker) -> None:
    _, answers = await _ask(settings, None, "is anyone there?")
    assert len(answers) == 1
    assert answers[0].startswith(DEMO_PREFIX)
    assert "is anyone there?" in answers[0]


def _on_partition(
    workspace: str, application: str, partition: int, count: int
) -> list[Conversation]:
    """``count`` conversations whose records all land on one partition."""
    partitioner = DefaultPartitioner()
    chosen: list[Conversation] = []
    n = 0
    while len(chosen) < count:
        conversation = Conversation(workspace, application, f"same-partition-{n}")
        n += 1
        key = conversation.id.encode()
        if partitioner(key, list(range(PARTITIONS)), list(range(PARTITIONS))) == partition:
            chosen.append(conversation)
    return chosen


async def test_a_slow_model_does_not_queue_conversations_behind_each_other(
    settings: Settings, ai_worker: Worker
) -> None:
    async with FakeLLM() as llm:
        llm.latency_s = 1.0
        workspace = new_id("ws")
        application = await create_application(
            settings, workspace, prompt="Be brief.", chatbot=_chatbot(llm)
        )
        conversations = _on_partition(workspace, application, partition=5, count=50)
        keys = {c.id for c in conversations}
        async with Collector(settings, keys) as collector:
            await send_all(
                settings, MESSAGES_INBOUND, [c.message("1", "hi") for c in conversations]
            )
            await collector.wait_for(1, within_s=60)
            # Handled one at a time, the model would have seen one request per answer so far.
            seen_at_first_answer = len(llm.requests)
            await collector.wait_for(50, within_s=60)
    assert seen_at_first_answer >= 40
    assert sorted(collector.sends) == sorted(keys)
    assert all(len(sends) == 1 for sends in collector.sends.values())


async def _until(condition: Callable[[], bool], within_s: float) -> None:
    for _ in range(int(within_s / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not so within {within_s}s")


async def test_a_worker_killed_mid_turn_answers_every_request_once(
    settings: Settings, ai_worker: Worker
) -> None:
    async with FakeLLM() as llm:
        llm.latency_s = 1.5
        workspace = new_id("ws")
        application = await create_application(settings, workspace, chatbot=_chatbot(llm))
        conversations = [Conversation(workspace, application, f"killed-{n}") for n in range(20)]
        keys = {c.id for c in conversations}
        async with Collector(settings, keys) as collector:
            await send_all(
                settings, MESSAGES_INBOUND, [c.message("1", "hi") for c in conversations]
            )
            await _until(lambda: len(llm.requests) >= 10, within_s=30)  # turns in flight
            ai_worker.kill()
            ready_before = ai_worker.ready_count()
            ai_worker.start()
            await asyncio.to_thread(ai_worker.wait_ready, ready_before)
            await collector.wait_for(20, within_s=90)
            await asyncio.sleep(2)  # a second answer, if one were coming, would arrive by now
    routed = Counter(s.message_id for sends in collector.sends.values() for s in sends)
    assert len(routed) == 20
    assert set(routed.values()) == {1}
