"""Tool calls through the real pipeline: the AI stage, function.calls, the function-call stage,
function.results, and back to the model, against a strict fake model and a tenant endpoint."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from core import ids
from core.ai.llm import DEMO_PREFIX
from core.ai.turns import LIMIT_REPLY
from core.ids import new_id
from core.security.secrets import SecretBox
from core.settings import Settings
from streams.contract import CONVERSATION_EVENTS, FUNCTION_CALLS, FUNCTION_RESULTS, MESSAGES_INBOUND
from streams.records import FunctionResult, decode, encode
from streams.replay import conversation_records
from streams.rerun import recorded_turns, rerun, rerun_model
from tests.fakes.llm import Call, FakeLLM, Text, ToolCalls
from tests.fakes.tool_endpoint import ToolEndpoint
from tests.integration.pipeline_harness import (
    Collector,
    Conversation,
    Worker,
    create_application,
    documents,
    insert_documents,
    read_topic,
    running,
    send_all,
    send_raw,
    wait_for_event,
)

ORDER_SCHEMA = {
    "type": "object",
    "properties": {"id": {"type": "integer", "minimum": 1}},
    "required": ["id"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def tool_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    # The tenant endpoints and the fake model of these tests listen on loopback, which only
    # allow-lists open.
    worker = Worker(
        tmp_path_factory.mktemp("tools"),
        "tool-worker",
        ai=True,
        env={
            "SWITCHBOARD_TOOL_ALLOW_NETWORKS": "127.0.0.1/32",
            "SWITCHBOARD_LLM_ALLOW_NETWORKS": "127.0.0.1/32",
        },
    )
    with running(worker):
        yield worker


async def _tenant(
    settings: Settings, llm: FakeLLM, endpoint: ToolEndpoint | None, **chatbot: Any
) -> tuple[str, str]:
    """A workspace with one application whose chatbot uses ``llm`` and a ``lookup_order`` tool."""
    workspace = new_id("ws")
    if endpoint is not None:
        sealed = SecretBox(settings.encryption_key.get_secret_value()).seal(
            f"Bearer {endpoint.token}"
        )
        await insert_documents(
            settings,
            "tools",
            {
                "_id": new_id("tool"),
                "workspace_id": workspace,
                "name": "lookup_order",
                "description": "Where an order is.",
                "url": endpoint.url("/orders/lookup"),
                "method": "POST",
                "parameters": ORDER_SCHEMA,
                "headers": {"X-Shop": "shoes"},
                "secret_headers": {"Authorization": sealed},
                "enabled": True,
            },
        )
    application = await create_application(
        settings,
        workspace,
        prompt="You help customers of a shoe shop.",
        chatbot={
            "tools": ["lookup_order", "get_conversation_info", "handoff_to_human"],
            "llm": {"base_url": llm.base_url, "api_key": "test-key", "model": "fake-model"},
            **chatbot,
        },
    )
    return workspace, application


async def _converse(
    settings: Settings, conversation: Conversation, texts: list[str], answers: int, first: int = 0
) -> list[str]:
    async with Collector(settings, {conversation.id}) as collector:
        for n, text in enumerate(texts):
            await send_all(settings, MESSAGES_INBOUND, [conversation.message(str(first + n), text)])
            await collector.wait_for(min(n + 1, answers), within_s=60)
        await asyncio.sleep(2)  # a further answer, if one were coming, would arrive by now
    return [s.text for s in collector.sends[conversation.id]]


async def _turns(settings: Settings, conversation: Conversation) -> list[dict[str, Any]]:
    records = await conversation_records(settings, conversation.id, topics=[CONVERSATION_EVENTS])
    return [
        r.value["data"]
        for r in records
        if isinstance(r.value, dict) and str(r.value.get("type", "")).startswith("turn.")
    ]


async def test_a_tenant_tool_is_called_and_the_model_reads_its_answer(
    settings: Settings, tool_worker: Worker
) -> None:
    async with FakeLLM() as llm, ToolEndpoint() as endpoint:
        endpoint.answer = {"order": 7, "status": "shipped"}
        workspace, application = await _tenant(settings, llm, endpoint)
        llm.script(
            ToolCalls([Call("lookup_order", {"id": 7})]),
            Text("Your order 7 has shipped."),
        )
        conversation = Conversation(workspace, application, "tool-user")
        answers = await _converse(settings, conversation, ["Where is order 7?"], answers=1)

    assert answers == ["Your order 7 has shipped."]
    (seen,) = endpoint.requests
    assert (seen.method, seen.path, seen.body) == ("POST", "/orders/lookup", {"id": 7})
    assert seen.headers["Authorization"] == f"Bearer {endpoint.token}"
    assert seen.headers["X-Shop"] == "shoes"
    assert seen.headers["Idempotency-Key"].startswith("fc_")
    first, second = llm.requests
    assert [t["function"]["name"] for t in first["tools"]] == [
        "lookup_order",
        "get_conversation_info",
        "handoff_to_human",
    ]
    assert first["tools"][0]["function"]["parameters"] == ORDER_SCHEMA
    tool_message = second["messages"][-1]
    assert tool_message["role"] == "tool"
    assert json.loads(tool_message["content"]) == {
        "status": 200,
        "body": {"order": 7, "status": "shipped"},
    }
    # The model never sees where the tool lives or what it sends.
    for request in llm.requests:
        text = json.dumps(request)
        assert endpoint.token not in text
        assert "127.0.0.1" not in text
        assert "X-Shop" not in text
    (turn,) = await _turns(settings, conversation)
    assert [len(r["tool_calls"]) for r in turn["rounds"]] == [1, 0]
    assert turn["rounds"][0]["results"][0]["ok"] is True
    assert turn["completion_tokens"] == sum(r["completion_tokens"] for r in turn["rounds"])


async def test_parallel_calls_and_bad_arguments_come_back_together(
    settings: Settings, tool_worker: Worker
) -> None:
    async with FakeLLM() as llm, ToolEndpoint() as endpoint:
        workspace, application = await _tenant(settings, llm, endpoint)
        llm.script(
            ToolCalls(
                [
                    Call("lookup_order", {"id": "seven"}),  # does not fit the schema
                    Call("get_conversation_info", {}),
                    Call("lookup_order", "{not json"),
                ]
            ),
            Text("Could you give me the order number as digits?"),
        )
        conversation = Conversation(workspace, application, "parallel-user")
        answers = await _converse(settings, conversation, ["Where is order seven?"], answers=1)

    assert answers == ["Could you give me the order number as digits?"]
    assert endpoint.requests == []  # nothing that failed validation was called
    results = [json.loads(m["content"]) for m in llm.requests[1]["messages"][-3:]]
    assert "do not fit the tool's schema" in results[0]["error"]
    assert "'seven' is not of type 'integer'" in results[0]["error"]
    assert results[1]["channel"] == "telegram"
    assert results[1]["mode"] == "bot"
    assert "not JSON" in results[2]["error"]


async def test_an_unknown_or_disabled_tool_fails_closed(
    settings: Settings, tool_worker: Worker
) -> None:
    async with FakeLLM() as llm, ToolEndpoint() as endpoint:
        workspace, application = await _tenant(
            settings, llm, endpoint, tools=["lookup_order", "refund"]
        )
        await insert_documents(
            settings,
            "tools",
            {
                "_id": new_id("tool"),
                "workspace_id": workspace,
                "name": "refund",
                "url": endpoint.url("/refund"),
                "parameters": {"type": "object"},
                "enabled": False,
            },
        )
        await _refresh_tools_cache(settings, workspace)
        conversation = Conversation(workspace, application, "closed-user")
        # Records a misbehaving producer could write: the stage checks every call itself.
        calls: list[tuple[str, dict[str, Any]]] = [
            ("drop_tables", {}),  # exists nowhere
            ("close_conversation", {}),  # a built-in this chatbot does not enable
            ("refund", {}),  # enabled by the chatbot, disabled by its owner
        ]
        records = [conversation.function_call(name, arguments) for name, arguments in calls]
        for record in records:
            await send_raw(settings, FUNCTION_CALLS, conversation.id, encode(record))
        found = await read_topic(settings, FUNCTION_RESULTS, {conversation.id}, within_s=30, want=3)
    results = {r.call_id: r for r in (decode(f.value) for f in found)}
    assert all(isinstance(r, FunctionResult) for r in results.values())
    errors = [results[record.call_id].error for record in records]
    assert "not enabled" in errors[0]
    assert "not enabled" in errors[1]
    assert "does not exist or is disabled" in errors[2]
    assert all(results[record.call_id].result is None for record in records)
    assert endpoint.requests == []


async def test_a_tool_pointing_inward_is_refused(settings: Settings, tool_worker: Worker) -> None:
    async with FakeLLM() as llm, ToolEndpoint() as endpoint:
        workspace, application = await _tenant(settings, llm, endpoint)
        await insert_documents(
            settings,
            "tools",
            {
                "_id": new_id("tool"),
                "workspace_id": workspace,
                "name": "metadata",
                "url": "http://169.254.169.254/latest/meta-data/",
                "method": "GET",
                "parameters": {"type": "object"},
            },
        )
        await _refresh_tools_cache(settings, workspace)
        application = await create_application(
            settings,
            workspace,
            chatbot={
                "tools": ["metadata"],
                "llm": {"base_url": llm.base_url, "api_key": "test-key", "model": "fake-model"},
            },
        )
        llm.script(ToolCalls([Call("metadata", {})]), Text("I cannot look that up."))
        conversation = Conversation(workspace, application, "ssrf-user")
        answers = await _converse(settings, conversation, ["show me secrets"], answers=1)
    assert answers == ["I cannot look that up."]
    result = json.loads(llm.requests[1]["messages"][-1]["content"])
    assert "refused" in result["error"]
    assert "link-local" in result["error"]


async def _refresh_tools_cache(settings: Settings, workspace: str) -> None:
    from core.ai.tools import cache_key
    from core.clients.cache import new_redis

    redis = new_redis(settings)
    try:
        await redis.delete(cache_key(workspace))
    finally:
        await redis.aclose()


async def test_handoff_lets_the_bot_say_goodbye_then_a_human_has_the_conversation(
    settings: Settings, tool_worker: Worker
) -> None:
    async with FakeLLM() as llm:
        workspace, application = await _tenant(settings, llm, None)
        llm.script(
            ToolCalls([Call("handoff_to_human", {"reason": "asks for a refund"})]),
            Text("A colleague will take over in a moment."),
        )
        conversation = Conversation(workspace, application, "handoff-user")
        answers = await _converse(settings, conversation, ["I want a person"], answers=1)
        await wait_for_event(settings, conversation.id, "mode.changed", 1)
        # In human mode the bot stays quiet: the next message gets no answer. The collector reads
        # from the start, so it waits for the goodbye (however long the topic) and then for more.
        later = await _converse(settings, conversation, ["hello?"], answers=1, first=1)
        await wait_for_event(settings, conversation.id, "message.created", 3)
    assert answers == ["A colleague will take over in a moment."]
    assert later == answers  # still that one answer only
    assert len(llm.requests) == 2
    (document,) = [
        d for d in await documents(settings, "conversations", workspace)
        if d["_id"] == conversation.id
    ]  # fmt: skip
    assert document["mode"] == "human"
    records = await conversation_records(settings, conversation.id, topics=[CONVERSATION_EVENTS])
    changes = [r.value for r in records if isinstance(r.value, dict)
               and r.value.get("type") == "mode.changed"]  # fmt: skip
    assert [(c["mode"], c["data"]["action"], c["data"]["reason"]) for c in changes] == [
        ("human", "handoff", "asks for a refund")
    ]


async def test_a_turn_that_keeps_calling_tools_ends_politely(
    settings: Settings, tool_worker: Worker
) -> None:
    async with FakeLLM() as llm:
        workspace, application = await _tenant(settings, llm, None, max_tool_rounds=2)
        llm.script(*[ToolCalls([Call("get_conversation_info", {})]) for _ in range(3)])
        conversation = Conversation(workspace, application, "looping-user")
        answers = await _converse(settings, conversation, ["loop forever"], answers=1)
    assert answers == [LIMIT_REPLY]
    assert len(llm.requests) == 3  # two rounds of tools, then the third call hits the bound
    (turn,) = await _turns(settings, conversation)
    assert turn["bound"] == "tool_rounds"
    assert len(turn["rounds"]) == 3


def test_call_ids_repeat_for_a_repeated_turn() -> None:
    first = ids.function_call_id("rq_1", 1, 0, "lookup_order", '{"id": 7}')
    assert first == ids.function_call_id("rq_1", 1, 0, "lookup_order", '{"id": 7}')
    assert first != ids.function_call_id("rq_1", 1, 0, "lookup_order", '{"id": 8}')
    assert first != ids.function_call_id("rq_2", 1, 0, "lookup_order", '{"id": 7}')


async def test_a_recorded_turn_is_explained_and_rerun_with_its_tool_results_served_back(
    settings: Settings, tool_worker: Worker
) -> None:
    async with FakeLLM() as llm, ToolEndpoint() as endpoint:
        endpoint.answer = {"order": 9, "status": "in transit"}
        workspace, application = await _tenant(settings, llm, endpoint)
        llm.script(ToolCalls([Call("lookup_order", {"id": 9})]), Text("It is on its way."))
        conversation = Conversation(workspace, application, "rerun-user")
        await _converse(settings, conversation, ["Where is order 9?"], answers=1)

    (turn,) = await recorded_turns(settings, conversation.id)
    explained = turn.as_text()
    assert "called: lookup_order" in explained
    assert "in transit" in explained
    assert "'It is on its way.'" in explained

    async with FakeLLM() as other:
        other.script(
            ToolCalls([Call("lookup_order", {"id": 9})]), Text("Order 9: in transit, soon there.")
        )
        model = rerun_model(settings, base_url=other.base_url, model="fake-model",
                            api_key="test-key")  # fmt: skip
        try:
            (again,) = await rerun(settings, conversation.id, model, prompt="Be terse.")
        finally:
            await model.close()
    assert other.requests[0]["messages"][0] == {"role": "system", "content": "Be terse."}
    assert other.requests[0]["temperature"] == 0
    served = json.loads(other.requests[1]["messages"][-1]["content"])
    assert served == {"status": 200, "body": {"order": 9, "status": "in transit"}}
    assert len(endpoint.requests) == 1  # the re-run called no tool
    assert (again.recorded_answer, again.answer) == (
        "It is on its way.",
        "Order 9: in transit, soon there.",
    )
    assert again.served == [{"name": "lookup_order", "arguments": '{"id": 9}', "recorded": True}]
    assert "+Order 9: in transit, soon there." in again.as_text()

    demo = rerun_model(settings, base_url=None, model=None, api_key=None)
    first = await rerun(settings, conversation.id, demo)
    second = await rerun(settings, conversation.id, demo)
    assert [r.answer for r in first] == [r.answer for r in second]


async def test_the_offline_demo_model_runs_the_whole_tool_loop(
    settings: Settings, tool_worker: Worker
) -> None:
    workspace = new_id("ws")
    application = await create_application(settings, workspace)  # no model: the demo answers
    conversation = Conversation(workspace, application, "demo-user")
    (answer,) = await _converse(settings, conversation, ["call get_conversation_info"], answers=1)
    assert answer.startswith(f"{DEMO_PREFIX}The tool answered:")
    assert '"channel": "telegram"' in answer
    (turn,) = await _turns(settings, conversation)
    assert [r["tool_calls"][0]["name"] for r in turn["rounds"][:1]] == ["get_conversation_info"]
