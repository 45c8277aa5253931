"""The fake LLM, driven by the real ``openai`` SDK: what it answers, streams and refuses."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest
from openai import AsyncOpenAI, AsyncStream
from openai.types.chat import (
    ChatCompletionChunk,
    ChatCompletionFunctionToolParam,
    ChatCompletionMessageParam,
)

from tests.fakes.llm import Call, Error, FakeLLM, Hang, Text, ToolCalls

WEATHER_TOOL: ChatCompletionFunctionToolParam = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
TIME_TOOL: ChatCompletionFunctionToolParam = {"type": "function", "function": {"name": "get_time"}}
USER = [{"role": "user", "content": "weather in Paris and Rome?"}]


def client_for(llm: FakeLLM, api_key: str = "test-key") -> AsyncOpenAI:
    # Strict validation makes the SDK check every answer against its models, so the fake's
    # wire format is tested too, not only what the test reads from it.
    return AsyncOpenAI(
        base_url=llm.base_url, api_key=api_key, max_retries=0, _strict_response_validation=True
    )


@pytest.fixture
async def llm() -> AsyncIterator[FakeLLM]:
    async with FakeLLM() as fake:
        yield fake


@pytest.fixture
async def client(llm: FakeLLM) -> AsyncIterator[AsyncOpenAI]:
    async with client_for(llm) as sdk:
        yield sdk


async def ask(client: AsyncOpenAI, text: str = "hi there", **options: Any) -> Any:
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": text}]
    return await client.chat.completions.create(model="fake-model", messages=messages, **options)


async def chunks_of(stream: AsyncStream[ChatCompletionChunk]) -> list[ChatCompletionChunk]:
    return [chunk async for chunk in stream]


def tool_deltas(chunks: list[ChatCompletionChunk]) -> list[Any]:
    return [d for c in chunks for choice in c.choices for d in choice.delta.tool_calls or []]


async def test_text_reply_with_usage(llm: FakeLLM, client: AsyncOpenAI) -> None:
    llm.script(Text("Hello there, friend"))

    response = await ask(client, "hi there")

    assert response.object == "chat.completion"
    assert response.model == "fake-model"
    assert response.choices[0].message.role == "assistant"
    assert response.choices[0].message.content == "Hello there, friend"
    assert response.choices[0].message.tool_calls is None
    assert response.choices[0].finish_reason == "stop"
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (2, 3)
    assert response.usage.total_tokens == 5
    assert llm.requests == [
        {"model": "fake-model", "messages": [{"role": "user", "content": "hi there"}]}
    ]


async def test_echoes_the_last_user_message_once_the_script_is_used(
    llm: FakeLLM, client: AsyncOpenAI
) -> None:
    llm.script(Text("scripted"))

    first, second = await ask(client, "one"), await ask(client, "two")

    assert first.choices[0].message.content == "scripted"
    assert second.choices[0].message.content == "echo: two"


async def test_streamed_text_joins_up_and_ends_with_usage(
    llm: FakeLLM, client: AsyncOpenAI
) -> None:
    text = "The quick brown fox jumps over the lazy dog"
    llm.script(Text(text))

    stream = await ask(client, stream=True, stream_options={"include_usage": True})
    chunks = await chunks_of(stream)

    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert len(pieces) > 5
    assert "".join(pieces) == text
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (2, 9)
    assert all(chunk.usage is None for chunk in chunks[:-1])


async def test_stream_without_usage_has_no_usage_chunk(llm: FakeLLM, client: AsyncOpenAI) -> None:
    chunks = await chunks_of(await ask(client, "hello", stream=True))

    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(chunk.usage is None for chunk in chunks)


async def test_single_tool_call(llm: FakeLLM, client: AsyncOpenAI) -> None:
    llm.script(ToolCalls([Call("get_weather", {"city": "Paris"}, id="call_1")]))

    response = await ask(client, tools=[WEATHER_TOOL])

    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls
    assert (call.id, call.type, call.function.name) == ("call_1", "function", "get_weather")
    assert json.loads(call.function.arguments) == {"city": "Paris"}


async def test_parallel_tool_calls_with_text(llm: FakeLLM, client: AsyncOpenAI) -> None:
    llm.script(
        ToolCalls(
            [Call("get_weather", {"city": "Paris"}), Call("get_weather", '{"city": "Rome"}')],
            text="Let me look.",
        )
    )

    response = await ask(client, tools=[WEATHER_TOOL, TIME_TOOL])

    message = response.choices[0].message
    assert message.content == "Let me look."
    arguments = [json.loads(call.function.arguments) for call in message.tool_calls]
    assert arguments == [{"city": "Paris"}, {"city": "Rome"}]
    assert len({call.id for call in message.tool_calls}) == 2
    assert all(call.id.startswith("call_") for call in message.tool_calls)


async def test_streamed_parallel_tool_calls_interleave_fragments(
    llm: FakeLLM, client: AsyncOpenAI
) -> None:
    calls = [Call("get_weather", {"city": "Paris"}, id="call_a"), Call("get_time", {"tz": "CET"})]
    llm.script(ToolCalls(calls, text="Checking."))

    chunks = await chunks_of(await ask(client, tools=[WEATHER_TOOL, TIME_TOOL], stream=True))

    deltas = tool_deltas(chunks)
    joined: dict[int, list[str]] = {}
    for delta in deltas:
        if delta.index not in joined:  # the first delta of a call names it
            assert delta.id is not None
            assert delta.type == "function"
            assert delta.function.name is not None
            assert delta.function.arguments == ""
        else:
            assert (delta.id, delta.type, delta.function.name) == (None, None, None)
        joined.setdefault(delta.index, []).append(delta.function.arguments)
    assert deltas[0].id == "call_a"
    assert all(len(fragments) > 2 for fragments in joined.values())  # header + 2 fragments
    arguments = {index: json.loads("".join(parts)) for index, parts in joined.items()}
    assert arguments == {0: {"city": "Paris"}, 1: {"tz": "CET"}}
    order = [delta.index for delta in deltas]
    assert order != sorted(order)  # the calls' fragments interleave
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Checking."
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


async def test_a_tool_result_turn_is_accepted(llm: FakeLLM, client: AsyncOpenAI) -> None:
    llm.script(ToolCalls([Call("get_weather", {"city": "Paris"})]), Text("It is 18C in Paris."))
    first = await ask(client, "weather in Paris?", tools=[WEATHER_TOOL])
    [call] = first.choices[0].message.tool_calls

    # The response message goes back as it came, as SDK users commonly do.
    messages: list[Any] = [
        {"role": "user", "content": "weather in Paris?"},
        first.choices[0].message,
        {"role": "tool", "tool_call_id": call.id, "content": "18C"},
    ]
    second = await client.chat.completions.create(
        model="fake-model", messages=messages, tools=[WEATHER_TOOL]
    )

    assert second.choices[0].message.content == "It is 18C in Paris."
    assert llm.requests[1]["messages"][2]["tool_call_id"] == call.id
    assert llm.rejected == []


async def test_lists_its_models(client: AsyncOpenAI) -> None:
    assert [model.id async for model in client.models.list()] == ["fake-model"]


async def test_a_wrong_key_is_refused(llm: FakeLLM) -> None:
    async with client_for(llm, api_key="sk-wrong-key-123") as client:
        with pytest.raises(openai.AuthenticationError) as refused:
            await ask(client)

    assert refused.value.code == "invalid_api_key"
    assert "sk-wrong-key-123" not in refused.value.message
    assert llm.rejected[0][0] == 401
    assert llm.requests == []


ANSWERED = {
    "role": "assistant",
    "content": None,
    "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    ],
}


@pytest.mark.parametrize(
    ("options", "param"),
    [
        pytest.param(
            {"messages": [*USER, ANSWERED, {"role": "tool", "tool_call_id": "x", "content": "1"}]},
            "messages.[2].tool_call_id",
            id="unknown tool_call_id",
        ),
        pytest.param(
            {"messages": [*USER, ANSWERED, *USER]}, "messages.[2]", id="unanswered tool call"
        ),
        pytest.param({"extra_body": {"foo": 1}}, "foo", id="unknown field"),
        pytest.param({"messages": []}, "messages", id="no messages"),
        pytest.param(
            {"messages": [{"role": "bot", "content": "hi"}]}, "messages.[0].role", id="bad role"
        ),
        pytest.param(
            {"messages": [{"role": "assistant"}]}, "messages.[0].content", id="empty assistant"
        ),
        pytest.param(
            {"messages": [{"role": "user", "content": "hi", "id": 1}]},
            "messages.[0].id",
            id="unknown message field",
        ),
        pytest.param(
            {"tools": [{"type": "function", "function": {"name": "get weather"}}]},
            "tools.[0].function.name",
            id="bad tool name",
        ),
        pytest.param({"tool_choice": "auto"}, "tool_choice", id="tool_choice without tools"),
        pytest.param(
            {
                "tools": [WEATHER_TOOL],
                "tool_choice": {"type": "function", "function": {"name": "x"}},
            },
            "tool_choice",
            id="tool_choice names no tool",
        ),
        pytest.param({"temperature": 2.5}, "temperature", id="temperature"),
        pytest.param({"max_tokens": 0}, "max_tokens", id="max_tokens"),
        pytest.param({"max_completion_tokens": 1.5}, "max_completion_tokens", id="max_completion"),
        pytest.param({"stream_options": {"include_usage": True}}, "stream_options", id="no stream"),
        pytest.param({"parallel_tool_calls": True}, "parallel_tool_calls", id="parallel no tools"),
    ],
)
async def test_invalid_requests_are_refused(
    llm: FakeLLM, client: AsyncOpenAI, options: dict[str, Any], param: str
) -> None:
    request: dict[str, Any] = {"model": "fake-model", "messages": USER, **options}

    with pytest.raises(openai.BadRequestError) as refused:
        await client.chat.completions.create(**request)

    assert refused.value.type == "invalid_request_error"
    assert refused.value.param == param
    [(status, message)] = llm.rejected
    assert status == 400
    assert refused.value.message == f"Error code: 400 - {message}"
    assert llm.requests == []


async def test_an_unknown_model_is_not_found(client: AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as refused:
        await client.chat.completions.create(
            model="gpt-9", messages=[{"role": "user", "content": "hi"}]
        )

    assert refused.value.code == "model_not_found"


async def test_raw_http_gets_openai_errors_and_server_sent_events(llm: FakeLLM) -> None:
    url = f"{llm.base_url}/chat/completions"
    auth = {"Authorization": "Bearer test-key"}
    body = {"model": "fake-model", "messages": USER, "stream": True}
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json=body) as response:
            assert response.status == 401
            assert set((await response.json())["error"]) == {"message", "type", "param", "code"}
        async with session.post(url, data=b"{not json", headers=auth) as response:
            assert response.status == 400
        async with session.get(f"{llm.base_url}/nowhere", headers=auth) as response:
            assert response.status == 404
            assert (await response.json())["error"]["message"] == "Invalid URL (GET /v1/nowhere)"
        async with session.post(url, json=body, headers=auth) as response:
            assert response.content_type == "text/event-stream"
            events = (await response.text()).split("\n\n")

    assert events[-2:] == ["data: [DONE]", ""]
    assert all(event.startswith("data: {") for event in events[:-2])
    assert [status for status, _ in llm.rejected] == [401, 400, 404]


async def test_scripted_server_error(llm: FakeLLM, client: AsyncOpenAI) -> None:
    llm.script(Error(500, "the model fell over"))

    with pytest.raises(openai.InternalServerError) as failed:
        await ask(client)

    assert failed.value.status_code == 500
    assert "the model fell over" in failed.value.message
    assert llm.rejected == []
    assert len(llm.requests) == 1


async def test_scripted_rate_limit_says_when_to_retry(llm: FakeLLM, client: AsyncOpenAI) -> None:
    llm.script(Error(429, "slow down"))

    with pytest.raises(openai.RateLimitError) as limited:
        await ask(client, stream=True)

    assert limited.value.response.headers["retry-after"] == "0"
    assert limited.value.code == "rate_limit_exceeded"


async def test_reply_latency_and_server_latency(llm: FakeLLM, client: AsyncOpenAI) -> None:
    llm.script(Text("slow", latency_s=0.2))
    began = time.monotonic()
    await ask(client)
    assert time.monotonic() - began >= 0.2

    llm.latency_s = 0.1
    began = time.monotonic()
    chunks = await chunks_of(await ask(client, stream=True))
    assert time.monotonic() - began >= 0.1
    assert chunks[-1].choices[0].finish_reason == "stop"


async def test_hang_runs_into_the_client_timeout(llm: FakeLLM, client: AsyncOpenAI) -> None:
    llm.script(Hang(), Text("back again"))

    with pytest.raises(openai.APITimeoutError):
        await ask(client, timeout=0.5)

    answer = await ask(client)
    assert answer.choices[0].message.content == "back again"


async def test_stopping_drops_a_hanging_request() -> None:
    arrived = asyncio.Event()

    def hang(request: dict[str, Any]) -> Hang:
        arrived.set()
        return Hang()

    async with FakeLLM() as llm, client_for(llm) as client:
        llm.respond_with(hang)
        pending = asyncio.create_task(ask(client))
        await asyncio.wait_for(arrived.wait(), 2)

        began = time.monotonic()
        await llm.stop()

        assert time.monotonic() - began < 0.5
        with pytest.raises(openai.APIConnectionError):
            await pending


async def test_respond_with_answers_many_conversations(llm: FakeLLM, client: AsyncOpenAI) -> None:
    def respond(request: dict[str, Any]) -> Text:
        return Text(f"hello {request['messages'][-1]['content']}", latency_s=0.05)

    llm.respond_with(respond)
    llm.script(Text("scripted first"))
    first = await ask(client, "user 0")

    answers = await asyncio.gather(*(ask(client, f"user {n}") for n in range(1, 31)))

    assert first.choices[0].message.content == "scripted first"
    contents = [answer.choices[0].message.content for answer in answers]
    assert contents == [f"hello user {n}" for n in range(1, 31)]


async def test_a_reply_no_model_could_give_fails_the_test() -> None:
    async def call_a_tool_nobody_offered() -> None:
        async with FakeLLM() as llm, client_for(llm) as client:
            llm.script(ToolCalls([Call("get_weather")]))
            with pytest.raises(openai.InternalServerError, match="FakeLLM script"):
                await ask(client)  # no tools in the request

    with pytest.raises(AssertionError, match="get_weather"):
        await call_a_tool_nobody_offered()
