from __future__ import annotations

from collections.abc import Sequence

from core.ai.llm import Completion, Message, ToolCall, ToolSpec, Usage
from core.ai.turns import ToolOutcome, TurnBounds, TurnResult, run_turn
from core.settings import Settings

TOOLS: list[ToolSpec] = [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]
ASKED: list[Message] = [{"role": "user", "content": "where is my order?"}]


def answer(text: str, prompt: int = 10, completion: int = 5) -> Completion:
    return Completion(text, (), "stop", Usage(prompt, completion), "fake-model", 0.01)


def calling(*calls: ToolCall, prompt: int = 10, completion: int = 5) -> Completion:
    return Completion("", calls, "tool_calls", Usage(prompt, completion), "fake-model", 0.01)


class ScriptedModel:
    """Answers with the scripted completions in order, keeping a copy of what it was shown."""

    def __init__(self, *script: Completion, repeat_last: bool = False) -> None:
        self.script = list(script)
        self.repeat_last = repeat_last
        self.seen: list[list[Message]] = []

    async def __call__(self, messages: Sequence[Message], tools: Sequence[ToolSpec]) -> Completion:
        self.seen.append([dict(m) for m in messages])
        if self.repeat_last and len(self.script) == 1:
            return self.script[0]
        return self.script.pop(0)


class FakeTools:
    """Answers every call with its name and round, recording the rounds it was asked in."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, list[str]]] = []

    async def __call__(self, round_no: int, calls: Sequence[ToolCall]) -> list[ToolOutcome]:
        self.calls.append((round_no, [c.id for c in calls]))
        return [
            ToolOutcome(c.id, c.name, c.arguments, f'{{"round": {round_no}}}', ok=True)
            for c in calls
        ]


async def test_a_plain_answer_ends_the_turn_in_one_round() -> None:
    model, tools = ScriptedModel(answer("It ships today.")), FakeTools()
    result = await run_turn(model, ASKED, TOOLS, tools, TurnBounds(), TurnResult())
    assert result.text == "It ships today."
    assert result.bound == ""
    assert result.model == "fake-model"
    assert len(result.rounds) == 1
    assert len(model.seen) == 1
    assert tools.calls == []


async def test_tool_calls_run_and_their_results_feed_the_next_round() -> None:
    first = ToolCall("c1", "lookup", '{"id": 7}')
    second = ToolCall("c2", "lookup", '{"id": 8}')
    third = ToolCall("c3", "lookup", "{}")
    model = ScriptedModel(calling(first, second), calling(third), answer("Both ship today."))
    tools = FakeTools()
    result = await run_turn(model, ASKED, TOOLS, tools, TurnBounds(), TurnResult())

    assert result.text == "Both ship today."
    assert tools.calls == [(1, ["c1", "c2"]), (2, ["c3"])]
    assert len(model.seen) == 3
    assert model.seen[0] == ASKED
    assert model.seen[1] == [
        *ASKED,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [first.as_message_part(), second.as_message_part()],
        },
        {"role": "tool", "tool_call_id": "c1", "content": '{"round": 1}'},
        {"role": "tool", "tool_call_id": "c2", "content": '{"round": 1}'},
    ]
    assert model.seen[2][len(model.seen[1]) :] == [
        {"role": "assistant", "content": None, "tool_calls": [third.as_message_part()]},
        {"role": "tool", "tool_call_id": "c3", "content": '{"round": 2}'},
    ]
    assert result.prompt_tokens == 30
    assert result.completion_tokens == 15


async def test_a_model_that_always_calls_tools_stops_at_the_round_bound() -> None:
    model = ScriptedModel(calling(ToolCall("c", "lookup", "{}")), repeat_last=True)
    tools = FakeTools()
    bounds = TurnBounds(max_tool_rounds=2, token_budget=1_000_000)
    result = await run_turn(model, ASKED, TOOLS, tools, bounds, TurnResult())
    assert result.bound == "tool_rounds"
    assert result.text == ""
    assert len(model.seen) == 3
    assert [round_no for round_no, _ in tools.calls] == [1, 2]


async def test_no_tool_rounds_means_no_tool_is_run() -> None:
    model = ScriptedModel(calling(ToolCall("c", "lookup", "{}")), repeat_last=True)
    tools = FakeTools()
    bounds = TurnBounds(max_tool_rounds=0)
    result = await run_turn(model, ASKED, TOOLS, tools, bounds, TurnResult())
    assert result.bound == "tool_rounds"
    assert len(model.seen) == 1
    assert tools.calls == []


async def test_the_token_budget_stops_the_turn() -> None:
    call = ToolCall("c", "lookup", "{}")
    model = ScriptedModel(calling(call, prompt=60, completion=10), repeat_last=True)
    tools = FakeTools()
    bounds = TurnBounds(max_tool_rounds=10, token_budget=100)
    result = await run_turn(model, ASKED, TOOLS, tools, bounds, TurnResult())
    assert result.bound == "tokens"
    assert result.text == ""
    assert len(model.seen) == 2  # 70 tokens are under the budget, 140 are over it
    assert [round_no for round_no, _ in tools.calls] == [1]


def test_bounds_prefer_the_chatbot_over_the_settings() -> None:
    settings = Settings(ai_max_tool_rounds=3, ai_turn_token_budget=5_000)
    assert TurnBounds.resolve({}, settings) == TurnBounds(3, 5_000)
    chosen = {"max_tool_rounds": 1, "token_budget": 900}
    assert TurnBounds.resolve(chosen, settings) == TurnBounds(1, 900)
    assert TurnBounds.resolve({"max_tool_rounds": 0}, settings) == TurnBounds(0, 5_000)


async def test_the_record_keeps_each_round_with_its_results() -> None:
    call = ToolCall("c1", "lookup", '{"id": 7}')
    model = ScriptedModel(calling(call), answer("Found it."))
    result = await run_turn(model, ASKED, TOOLS, FakeTools(), TurnBounds(), TurnResult())
    record = result.record()
    assert record["bound"] == ""
    first, last = record["rounds"]
    assert first["tool_calls"] == [{"id": "c1", "name": "lookup", "arguments": '{"id": 7}'}]
    assert first["results"] == [
        {
            "tool_call_id": "c1",
            "name": "lookup",
            "arguments": '{"id": 7}',
            "content": '{"round": 1}',
            "ok": True,
        }
    ]
    assert last["text"] == "Found it."
    assert last["results"] == []
    assert result.outcomes == first["results"]
