"""Anyone holding a public widget key can start conversations, each turn a model call. A spent
daily token budget (the application's, or its workspace's) must stop the model calls: the
visitor gets a short reply, the model is not called, operators see ``budget.exceeded``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from redis.asyncio import Redis

from core.ids import new_id
from core.settings import Settings
from streams.contract import CONVERSATION_EVENTS, MESSAGES_INBOUND
from streams.replay import conversation_records
from tests.fakes.llm import FakeLLM, Text
from tests.integration.pipeline_harness import (
    Collector,
    Conversation,
    Worker,
    create_application,
    running,
    send_all,
)

BUDGET_REPLY = "Sorry, we cannot answer more messages today. Please try again tomorrow."


@pytest.fixture(scope="module")
def budget_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    env = {"SWITCHBOARD_LLM_ALLOW_NETWORKS": "127.0.0.1/32"}  # the fake model, on loopback
    worker = Worker(tmp_path_factory.mktemp("budget"), "budget-worker", ai=True, env=env)
    with running(worker) as started:
        yield started


def _chatbot(llm: FakeLLM) -> dict[str, Any]:
    return {"llm": {"base_url": llm.base_url, "api_key": "test-key", "model": "fake-model"}}


async def _converse(settings: Settings, conversation: Conversation, texts: list[str]) -> list[str]:
    """Each message once the previous one is answered: what the visitor was sent."""
    async with Collector(settings, {conversation.id}) as collector:
        for n, text in enumerate(texts, start=1):
            await send_all(settings, MESSAGES_INBOUND, [conversation.message(str(n), text)])
            await collector.wait_for(n, within_s=60)
    return [s.text for s in collector.sends[conversation.id]]


async def _events(settings: Settings, conversation: Conversation, kind: str) -> list[Any]:
    records = await conversation_records(settings, conversation.id, topics=[CONVERSATION_EVENTS])
    return [r.value for r in records if isinstance(r.value, dict) and r.value["type"] == kind]


async def test_a_spent_application_budget_stops_the_model(
    settings: Settings, budget_worker: Worker
) -> None:
    async with FakeLLM() as llm:
        llm.script(Text("The first answer."))
        workspace = new_id("ws")
        application = await create_application(
            settings, workspace, chatbot=_chatbot(llm), budget={"tokens_per_day": 5}
        )
        conversation = Conversation(workspace, application, "budget")
        answers = await _converse(settings, conversation, ["first", "second", "third"])
    assert len(llm.requests) == 1, "the model was called over the budget"
    assert answers == ["The first answer.", BUDGET_REPLY, BUDGET_REPLY]
    hits = await _events(settings, conversation, "budget.exceeded")
    assert len(hits) == 2
    data = hits[0]["data"]
    assert {k: data[k] for k in ("budget", "scope", "limit")} == {
        "budget": "tokens_per_day",
        "scope": "application",
        "limit": 5,
    }
    assert data["used"] > 5


async def test_an_override_never_exceeds_the_workspace_budget(
    settings: Settings, budget_worker: Worker, redis: Redis
) -> None:
    from core.stores.token_budget import day_of, used_key

    workspace = new_id("ws")
    limit = Settings().workspace_tokens_per_day
    # The workspace spent its day on another application; this one's override is larger.
    await redis.set(used_key("workspace", workspace, day_of(time.time())), limit, ex=3600)
    async with FakeLLM() as llm:
        application = await create_application(
            settings, workspace, chatbot=_chatbot(llm), budget={"tokens_per_day": limit * 10}
        )
        conversation = Conversation(workspace, application, "budget")
        answers = await _converse(settings, conversation, ["hello"])
    assert llm.requests == []
    assert answers == [BUDGET_REPLY]
    (hit,) = await _events(settings, conversation, "budget.exceeded")
    assert hit["data"] == {
        "budget": "tokens_per_day",
        "scope": "workspace",
        "limit": limit,
        "used": limit,
    }


async def test_a_redelivered_request_is_counted_once(settings: Settings, redis: Redis) -> None:
    from core.stores.token_budget import TokenBudget, day_of, used_key

    budget = TokenBudget(redis, settings)
    workspace, application, request = new_id("ws"), new_id("app"), new_id("req")
    assert await budget.spend(request, workspace, application, 40)
    assert not await budget.spend(request, workspace, application, 40)
    day = day_of(time.time())
    counted = await redis.mget(
        [used_key("application", application, day), used_key("workspace", workspace, day)]
    )
    assert counted == [b"40", b"40"]
    assert 0 < await redis.ttl(used_key("workspace", workspace, day)) <= 2 * 24 * 3600
