"""Why the bot said what it said, and what it would say with another prompt or model.

The AI stage records every turn on conversation.events (``turn.completed`` or ``turn.failed``):
the messages the model saw, the tools it was offered, every round's tool calls and their
results, tokens, latency and the answer sent. ``turns`` reads them back. ``rerun`` runs each
recorded turn again through the same loop as the AI stage (``core.ai.turns``), against a new
system prompt or model, with the recorded tool results served back in place of the tools:
nothing is produced to Kafka and no tool endpoint is called. With the offline demo model, or
a model at temperature 0, a re-run is repeatable, so prompts can be compared answer by answer.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.ai.llm import (
    ChatModel,
    Completion,
    DemoChatModel,
    Message,
    ModelSettings,
    OpenAIChatModel,
    ToolCall,
    ToolSpec,
)
from core.ai.turns import LIMIT_REPLY, ToolOutcome, TurnBounds, TurnResult, run_turn
from core.settings import Settings
from streams.contract import CONVERSATION_EVENTS
from streams.replay import conversation_records

NOT_RECORDED = "no result was recorded for this call; nothing was called during the re-run"


@dataclass(frozen=True)
class RecordedTurn:
    request_id: str
    timestamp_ms: int
    data: Mapping[str, Any]

    @property
    def user_text(self) -> str:
        users = [m for m in self.data.get("messages") or [] if m.get("role") == "user"]
        return str(users[-1].get("content") or "") if users else ""

    @property
    def outcomes(self) -> list[dict[str, Any]]:
        return [o for r in self.data.get("rounds") or [] for o in r.get("results") or []]

    def as_json(self) -> str:
        return json.dumps(
            {"request_id": self.request_id, "timestamp": self.timestamp_ms / 1000, **self.data},
            ensure_ascii=False,
        )

    def as_text(self) -> str:
        """The turn as a person reads it: what the model saw, did, and what was sent."""
        data = self.data
        system: Mapping[str, Any] = next(
            (m for m in data.get("messages") or [] if m.get("role") == "system"), {}
        )
        lines = [
            f"turn {self.request_id}: model {data.get('model')} {data.get('parameters') or {}}",
            f"  system:   {_short(system.get('content'))}",
            f"  context:  {len(data.get('messages') or [])} message(s); "
            f"tools offered: {[t['function']['name'] for t in data.get('tools') or []]}",
            f"  user:     {self.user_text!r}",
        ]
        for number, round_ in enumerate(data.get("rounds") or [], start=1):
            tokens = f"{round_.get('prompt_tokens')}+{round_.get('completion_tokens')} tokens"
            lines.append(f"  round {number}: {tokens}, {round_.get('latency_s')}s")
            if round_.get("text"):
                lines.append(f"    said:   {_short(round_['text'])}")
            for result in round_.get("results") or []:
                lines.append(f"    called: {result['name']}({result['arguments']})")
                lines.append(f"    got:    {_short(result['content'])}")
        for key in ("bound", "failure"):
            if data.get(key):
                lines.append(f"  {key}:    {data[key]}")
        lines.append(f"  answer:   {data.get('answer', '')!r}")
        return "\n".join(lines)


def _short(text: object, limit: int = 160) -> str:
    flat = " ".join(str(text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


async def recorded_turns(settings: Settings, conversation_id: str) -> list[RecordedTurn]:
    records = await conversation_records(settings, conversation_id, topics=[CONVERSATION_EVENTS])
    turns: dict[str, RecordedTurn] = {}
    for record in records:
        value = record.value
        if isinstance(value, dict) and str(value.get("type", "")).startswith("turn."):
            # A repeated turn (after a crash) is announced again under the same request id.
            request_id = str(value.get("subject_id", ""))
            turns.setdefault(
                request_id, RecordedTurn(request_id, record.timestamp_ms, value.get("data") or {})
            )
    return list(turns.values())


def _same_arguments(left: str, right: str) -> bool:
    try:
        return bool(json.loads(left or "{}") == json.loads(right or "{}"))
    except ValueError:
        return left == right


@dataclass
class RecordedTools:
    """Serves a turn's recorded tool results to a re-run: same call first, then same tool."""

    recorded: list[dict[str, Any]]
    served: list[dict[str, Any]] = field(default_factory=list)

    async def __call__(self, round_no: int, calls: Sequence[ToolCall]) -> list[ToolOutcome]:
        outcomes = []
        for call in calls:
            match = next(
                (
                    o
                    for o in self.recorded
                    if o["name"] == call.name and _same_arguments(o["arguments"], call.arguments)
                ),
                None,
            ) or next((o for o in self.recorded if o["name"] == call.name), None)
            if match is None:
                outcome = ToolOutcome.failed(call, NOT_RECORDED)
            else:
                self.recorded.remove(match)
                outcome = ToolOutcome(
                    call.id, call.name, call.arguments, match["content"], bool(match["ok"])
                )
            self.served.append(
                {"name": call.name, "arguments": call.arguments, "recorded": bool(match)}
            )
            outcomes.append(outcome)
        return outcomes


@dataclass
class Rerun:
    turn: RecordedTurn
    answer: str
    result: TurnResult
    served: list[dict[str, Any]]

    @property
    def recorded_answer(self) -> str:
        return str(self.turn.data.get("answer", ""))

    @property
    def changed(self) -> bool:
        return self.answer != self.recorded_answer

    def as_json(self) -> str:
        return json.dumps(
            {
                "request_id": self.turn.request_id,
                "user": self.turn.user_text,
                "recorded_answer": self.recorded_answer,
                "answer": self.answer,
                "changed": self.changed,
                "tools_served": self.served,
                "bound": self.result.bound,
                "prompt_tokens": self.result.prompt_tokens,
                "completion_tokens": self.result.completion_tokens,
            },
            ensure_ascii=False,
        )

    def as_text(self) -> str:
        lines = [f"turn {self.turn.request_id}", f"  user:     {self.turn.user_text!r}"]
        for served in self.served:
            source = "recorded result" if served["recorded"] else "not recorded"
            lines.append(f"  tool:     {served['name']}({served['arguments']}) <- {source}")
        if not self.changed:
            lines.append(f"  answer:   {self.answer!r} (unchanged)")
            return "\n".join(lines)
        lines.append(f"  recorded: {self.recorded_answer!r}")
        lines.append(f"  re-run:   {self.answer!r}")
        diff = difflib.unified_diff(
            self.recorded_answer.splitlines(), self.answer.splitlines(), "recorded", "re-run",
            lineterm="",
        )  # fmt: skip
        lines += [f"  {line}" for line in diff]
        return "\n".join(lines)


def rerun_model(
    settings: Settings, *, base_url: str | None, model: str | None, api_key: str | None
) -> ChatModel:
    """The model to re-run with: the one named, else the default, else the offline demo."""
    chosen = ModelSettings.resolve(
        {"base_url": base_url, "model": model, "api_key": api_key, "temperature": 0}, settings
    )
    return DemoChatModel() if chosen is None else OpenAIChatModel(chosen)


async def rerun(
    settings: Settings,
    conversation_id: str,
    model: ChatModel,
    *,
    prompt: str | None = None,
) -> list[Rerun]:
    """Every recorded turn of the conversation, answered again; sends nothing anywhere."""
    reruns = []
    for turn in await recorded_turns(settings, conversation_id):
        messages: list[Message] = [dict(m) for m in turn.data.get("messages") or []]
        if prompt is not None and messages and messages[0].get("role") == "system":
            messages[0] = {"role": "system", "content": prompt}
        tools: list[ToolSpec] = list(turn.data.get("tools") or [])
        served = RecordedTools(turn.outcomes)

        async def complete(
            conversation: Sequence[Message], offered: Sequence[ToolSpec]
        ) -> Completion:
            return await model.complete(conversation, offered)

        bounds = TurnBounds(
            max_tool_rounds=max(len(turn.data.get("rounds") or []), settings.ai_max_tool_rounds),
            token_budget=settings.ai_turn_token_budget,
        )
        result = await run_turn(complete, messages, tools, served, bounds, TurnResult())
        answer = LIMIT_REPLY if result.bound else result.text
        reruns.append(Rerun(turn, answer, result, served.served))
    return reruns
