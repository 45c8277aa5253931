from __future__ import annotations

from typing import Any

import openai
import pytest
from aiohttp import web
from pydantic import SecretStr

from core.ai.llm import (
    DEMO_LABEL,
    DEMO_PREFIX,
    Completion,
    DemoChatModel,
    ModelSettings,
    OpenAIChatModel,
    ToolCall,
    ToolCallAssembler,
)
from core.security.egress import EgressPolicy, EgressRefused
from core.settings import Settings
from tests.fakes.llm import Call, Error, FakeLLM, Hang, Text, ToolCalls

LOOKUP = {"type": "function", "function": {"name": "lookup_order", "parameters": {}}}


def test_the_chatbot_config_wins_over_the_settings() -> None:
    settings = Settings(
        llm_base_url="http://127.0.0.1:1/v1", llm_model="base", llm_api_key=SecretStr("k")
    )
    assert ModelSettings.resolve({}, Settings()) is None, "no model anywhere: the demo"
    default = ModelSettings.resolve({}, settings)
    assert default is not None
    assert (default.base_url, default.model, default.api_key) == (
        "http://127.0.0.1:1/v1",
        "base",
        "k",
    )
    own = ModelSettings.resolve(
        {"model": "mine", "temperature": 0.2, "max_tokens": 50, "timeout_s": 5}, settings
    )
    assert own is not None
    assert (own.model, own.temperature, own.max_tokens, own.timeout_s) == ("mine", 0.2, 50, 5.0)
    keyless = ModelSettings.resolve({"base_url": "http://127.0.0.1:2/v1", "model": "m"}, Settings())
    assert keyless is not None
    assert keyless.api_key == "unused"


def test_streamed_tool_call_fragments_are_joined_by_index() -> None:
    calls = ToolCallAssembler()
    calls.add(0, "call_a", "lookup_order", "")
    calls.add(1, "call_b", "get_weather", "")
    calls.add(0, None, None, '{"id": ')
    calls.add(1, None, None, '{"city": "Lis')
    calls.add(0, None, None, "7}")
    calls.add(1, None, None, 'bon"}')
    joined = calls.calls()
    assert [c.name for c in joined] == ["lookup_order", "get_weather"]
    assert [c.parsed_arguments() for c in joined] == [{"id": 7}, {"city": "Lisbon"}]


def test_arguments_that_are_not_an_object_are_refused() -> None:
    with pytest.raises(ValueError, match="not JSON"):
        ToolCall("c", "t", "{oops").parsed_arguments()
    with pytest.raises(ValueError, match="not a JSON object"):
        ToolCall("c", "t", "[1]").parsed_arguments()
    assert ToolCall("c", "t", "").parsed_arguments() == {}


async def test_the_demo_model_is_labelled_and_deterministic() -> None:
    model = DemoChatModel()
    messages = [{"role": "system", "content": "be nice"}, {"role": "user", "content": "hello"}]
    first = await model.complete(messages, [])
    second = await model.complete(messages, [])
    assert first.text == second.text
    assert first.text.startswith(DEMO_PREFIX)
    assert "hello" in first.text
    assert first.model == model.label == DEMO_LABEL
    streamed: list[str] = []

    async def collect(delta: str) -> None:
        streamed.append(delta)

    third = await model.complete(messages, [], on_delta=collect)
    assert "".join(streamed) == third.text == first.text
    assert len(streamed) > 1


async def test_the_demo_model_calls_a_tool_when_asked_and_reports_its_result() -> None:
    model = DemoChatModel()
    asked = [{"role": "user", "content": 'call lookup_order {"id": 7}'}]
    completion = await model.complete(asked, [LOOKUP])
    assert completion.finish_reason == "tool_calls"
    (call,) = completion.tool_calls
    assert (call.name, call.parsed_arguments()) == ("lookup_order", {"id": 7})
    unknown = await model.complete([{"role": "user", "content": "call rm_rf"}], [LOOKUP])
    assert unknown.tool_calls == ()
    assert unknown.text.startswith(DEMO_PREFIX)
    answered: list[dict[str, Any]] = [
        *asked,
        {"role": "assistant", "content": None, "tool_calls": [call.as_message_part()]},
        {"role": "tool", "tool_call_id": call.id, "content": '{"status": "shipped"}'},
    ]
    final = await model.complete(answered, [LOOKUP])
    assert final.tool_calls == ()
    assert "shipped" in final.text


def _model(llm: FakeLLM, timeout_s: float = 5.0) -> OpenAIChatModel:
    return OpenAIChatModel(
        ModelSettings(
            base_url=llm.base_url,
            api_key="test-key",
            model="fake-model",
            temperature=0.3,
            max_tokens=200,
            timeout_s=timeout_s,
        )
    )


HELLO: list[dict[str, Any]] = [
    {"role": "system", "content": "You are helpful."},
    {"role": "user", "content": "hello there"},
]


async def test_a_plain_answer_with_its_usage() -> None:
    async with FakeLLM() as llm:
        llm.script(Text("Hi! How can I help?"))
        model = _model(llm)
        try:
            completion = await model.complete(HELLO, [LOOKUP])
        finally:
            await model.close()
    assert completion.text == "Hi! How can I help?"
    assert completion.tool_calls == ()
    assert completion.finish_reason == "stop"
    assert completion.usage.completion_tokens == 5
    assert completion.usage.prompt_tokens > 0
    (request,) = llm.requests
    assert (request["temperature"], request["max_tokens"]) == (0.3, 200)
    assert request["tools"] == [LOOKUP]


async def test_a_streamed_answer_arrives_in_pieces() -> None:
    pieces: list[str] = []

    async def collect(delta: str) -> None:
        pieces.append(delta)

    async with FakeLLM() as llm:
        llm.script(Text("one two three four five six seven eight"))
        model = _model(llm)
        try:
            completion = await model.complete(HELLO, [], on_delta=collect)
        finally:
            await model.close()
    assert len(pieces) > 1
    assert "".join(pieces) == completion.text == "one two three four five six seven eight"
    assert completion.usage.completion_tokens == 8
    assert llm.requests[0]["stream_options"] == {"include_usage": True}


async def test_parallel_tool_calls_streamed_or_not() -> None:
    weather = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}
    calls = ToolCalls([Call("lookup_order", {"id": 7}), Call("get_weather", {"city": "Lisbon"})])

    async def ignore(delta: str) -> None:
        pass

    async with FakeLLM() as llm:
        llm.script(calls, calls)
        model = _model(llm)
        try:
            plain = await model.complete(HELLO, [LOOKUP, weather])
            streamed = await model.complete(HELLO, [LOOKUP, weather], on_delta=ignore)
        finally:
            await model.close()
    for completion in (plain, streamed):
        assert completion.finish_reason == "tool_calls"
        assert [(c.name, c.parsed_arguments()) for c in completion.tool_calls] == [
            ("lookup_order", {"id": 7}),
            ("get_weather", {"city": "Lisbon"}),
        ]
        assert all(c.id for c in completion.tool_calls)


async def test_errors_and_hangs_surface_without_retries() -> None:
    async with FakeLLM() as llm:
        llm.script(Error(500), Hang())
        model = _model(llm, timeout_s=0.5)
        try:
            with pytest.raises(openai.InternalServerError):
                await model.complete(HELLO, [])
            with pytest.raises(openai.APITimeoutError):
                await model.complete(HELLO, [])
        finally:
            await model.close()
    assert len(llm.requests) == 2, "the SDK's own retries are off"


async def _call(llm: FakeLLM, base_url: str, egress: EgressPolicy | None) -> Completion:
    model = OpenAIChatModel(
        ModelSettings(base_url=base_url, api_key="test-key", model="fake-model", egress=egress)
    )
    try:
        return await model.complete(HELLO, [], None)
    finally:
        await model.close()


async def test_a_guarded_model_calls_only_where_the_egress_policy_allows() -> None:
    async with FakeLLM() as llm:
        with pytest.raises(EgressRefused, match="loopback"):
            await _call(llm, llm.base_url, EgressPolicy())
        with pytest.raises(EgressRefused, match="loopback"):
            await _call(llm, llm.base_url.replace("127.0.0.1", "localhost"), EgressPolicy())
        assert llm.requests == []
        allowed = await _call(llm, llm.base_url, EgressPolicy.from_setting("127.0.0.1/32"))
    assert allowed.text.startswith("echo:")
    assert len(llm.requests) == 1


@pytest.mark.parametrize("guarded", [True, False])
async def test_a_redirect_is_never_followed(guarded: bool) -> None:
    async with FakeLLM() as llm:

        async def redirect(request: web.Request) -> web.Response:
            raise web.HTTPTemporaryRedirect(f"{llm.base_url}/chat/completions")

        app = web.Application()
        app.router.add_post("/v1/chat/completions", redirect)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = runner.addresses[0][1]
        egress = EgressPolicy.from_setting("127.0.0.1/32") if guarded else None
        try:
            with pytest.raises(openai.APIStatusError) as error:
                await _call(llm, f"http://127.0.0.1:{port}/v1", egress)
        finally:
            await runner.cleanup()
    assert error.value.status_code == 307
    assert llm.requests == [], "the redirect was followed"
