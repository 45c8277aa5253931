"""One bot turn: the model, then tools and the model again, until it answers or a bound is hit.

The loop knows nothing of Kafka: the AI stage runs tools through the function-call stage, and
a replay serves the results recorded the first time, through the same loop. What every round
did (text, tool calls, results, tokens, latency) is kept, so the turn can be shown and re-run.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from core.ai.llm import Completion, Message, ToolCall, ToolSpec
from core.settings import Settings

#: What the user reads when a turn hits one of its bounds.
LIMIT_REPLY = (
    "I'm sorry, I could not finish looking into that. A member of our team can help you further."
)

Complete = Callable[[Sequence[Message], Sequence[ToolSpec]], Awaitable[Completion]]


@dataclass(frozen=True)
class TurnBounds:
    """How far one turn may go: rounds of tool calls, and tokens over all its model calls."""

    max_tool_rounds: int = 4
    token_budget: int = 16_000

    @classmethod
    def resolve(cls, chatbot: Mapping[str, Any], settings: Settings) -> TurnBounds:
        rounds = chatbot.get("max_tool_rounds")
        budget = chatbot.get("token_budget")
        return cls(
            max_tool_rounds=settings.ai_max_tool_rounds if rounds is None else max(0, int(rounds)),
            token_budget=settings.ai_turn_token_budget if budget is None else max(1, int(budget)),
        )


@dataclass(frozen=True)
class ToolOutcome:
    """A tool call's result as the model reads it (``content`` is JSON text)."""

    tool_call_id: str  # the model's id for the call
    name: str
    arguments: str
    content: str
    ok: bool

    @classmethod
    def failed(cls, call: ToolCall, error: str) -> ToolOutcome:
        return cls(call.id, call.name, call.arguments, json.dumps({"error": error}), ok=False)


Execute = Callable[[int, Sequence[ToolCall]], Awaitable[list[ToolOutcome]]]


@dataclass
class Round:
    text: str
    tool_calls: list[dict[str, str]]
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    results: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def of(cls, completion: Completion) -> Round:
        return cls(
            text=completion.text,
            tool_calls=[
                {"id": c.id, "name": c.name, "arguments": c.arguments}
                for c in completion.tool_calls
            ],
            finish_reason=completion.finish_reason,
            prompt_tokens=completion.usage.prompt_tokens,
            completion_tokens=completion.usage.completion_tokens,
            latency_s=round(completion.latency_s, 4),
        )


@dataclass
class TurnResult:
    text: str = ""
    rounds: list[Round] = field(default_factory=list)
    bound: str = ""  # "tool_rounds" or "tokens" when the turn was cut short
    model: str = ""

    @property
    def prompt_tokens(self) -> int:
        return sum(r.prompt_tokens for r in self.rounds)

    @property
    def completion_tokens(self) -> int:
        return sum(r.completion_tokens for r in self.rounds)

    @property
    def outcomes(self) -> list[dict[str, Any]]:
        return [result for r in self.rounds for result in r.results]

    def record(self) -> dict[str, Any]:
        return {"rounds": [asdict(r) for r in self.rounds], "bound": self.bound}


async def run_turn(
    complete: Complete,
    messages: Sequence[Message],
    tools: Sequence[ToolSpec],
    execute: Execute,
    bounds: TurnBounds,
    result: TurnResult,
) -> TurnResult:
    """Fill ``result`` as the turn goes, so a caller that gives up midway still has the rounds."""
    conversation = list(messages)
    while True:
        completion = await complete(conversation, tools)
        result.model = completion.model
        result.rounds.append(Round.of(completion))
        if not completion.tool_calls:
            result.text = completion.text
            return result
        if len(result.rounds) > bounds.max_tool_rounds:
            result.bound = "tool_rounds"
            return result
        if result.prompt_tokens + result.completion_tokens >= bounds.token_budget:
            result.bound = "tokens"
            return result
        outcomes = await execute(len(result.rounds), completion.tool_calls)
        result.rounds[-1].results = [asdict(o) for o in outcomes]
        conversation.append(
            {
                "role": "assistant",
                "content": completion.text or None,
                "tool_calls": [c.as_message_part() for c in completion.tool_calls],
            }
        )
        conversation.extend(
            {"role": "tool", "tool_call_id": o.tool_call_id, "content": o.content} for o in outcomes
        )
