"""The AI stage in a real worker, against a strict fake OpenAI-compatible server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from core.ids import new_id
from core.llm import DEMO_PREFIX
from core.settings import Settings
from streams.replay import conversation_records
from tests.fakes.llm import Error, FakeLLM, Hang, Text
from tests.integration.pipeline_harness import (
    Collector,
    Conversation,
    Worker,
    create_application,
    send_all,
)


@pytest.fixture(scope="module")
def ai_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    worker = Worker(tmp_path_factory.mktemp("ai"), "ai-worker", ai=True)
    worker.start()
    try:
        worker.wait_ready()
        yield worker
    finally:
        assert worker.stop() in (0, -9), worker.tail()


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
        await send_all(settings, "messages.inbound", [conversation.message("1", text)])
        await collector.wait_for(1, within_s=60)
        await asyncio.sleep(1)  # a second answer, if one were coming, would arrive by now
    return conversation, [s.text for s in collector.sends[conversation.id]]


async def _turn_events(settings: Settings, conversation: Conversation) -> list[dict[str, Any]]:
    records = await conversation_records(settings, conversation.id, topics=["conversation.events"])
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
