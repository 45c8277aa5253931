"""The AI agent: answers each turn of a bot-mode conversation with the chatbot's model.

agent.requests → messages.outbound, conversation.events; streams the answer's text to web
conversations through Redis as it arrives. Key: conversation id. Turns of different
conversations run side by side (``agents.runtime.keyed``), turns of one conversation in order, and a
request is acked only when it and every earlier request of its partition are answered.

A redelivered request is answered once: the answer's id comes from the request's, a Redis mark
skips the model for a request already answered, and the delivery agent drops a repeat. Model
failures (rate limits, 5xx, timeouts, lost connections) are retried with backoff within the
turn's time limit; after that the chatbot's fallback reply is sent, and operators see why.

Tools: the chatbot's enabled tools are offered to the model; its calls go out on
function.calls (``agents.function_call`` runs them) and the turn continues with their results
from function.results, round after round, within the turn's bounds (tool rounds, tokens, time);
a turn cut short by a bound ends with a polite reply. A handoff or close the tools accepted
rides on the answer (``then_action``) and takes effect once the answer is delivered.

Models: a chatbot's model is resolved under ``core.ai.model_policy`` (the platform's key only
with the platform's URL, its models and caps; a tenant's URL through the egress guard); a model
the rules refuse fails the turn with the fallback reply and the reason. Clients are kept per
distinct config, the least recently used closed beyond ``ai_max_model_clients``. Budgets: a
workspace or application whose model tokens for the UTC day are spent gets a short reply
without a model call, and operators a ``budget.exceeded`` event.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import openai

from agents.runtime.context import PipelineDeps, deps_of
from agents.runtime.failures import RetryPolicy, handle_one
from agents.runtime.keyed import run_keyed
from agents.runtime.outputs import Send, event_of, publish_all
from core import ids
from core.ai.llm import (
    ChatModel,
    Completion,
    DemoChatModel,
    Message,
    ModelSettings,
    OnDelta,
    OpenAIChatModel,
    ToolCall,
    ToolSpec,
)
from core.ai.model_policy import ModelPolicy, ModelRefused, RefusedModel
from core.ai.model_thread import ModelThread, ThreadedModel
from core.ai.prompts import turn_messages
from core.ai.tools import CONVERSATION_ACTIONS
from core.ai.turns import LIMIT_REPLY, ToolOutcome, TurnBounds, TurnResult, run_turn
from core.security.egress import EgressRefused
from core.security.secrets import PREFIX as SEALED
from core.settings import Settings
from core.stores.token_budget import BudgetSpent, TokenBudget
from streams.app import app
from streams.contract import WEB_CHANNEL
from streams.faust_fixes import skips
from streams.records import AgentRequest, FunctionCall, bot_answer
from streams.topics import agent_requests, function_calls, messages_outbound

log = logging.getLogger(__name__)

STAGE = "ai-agent"
FALLBACK_REPLY = "Sorry, I cannot answer right now. A member of our team will get back to you."
BUDGET_REPLY = "Sorry, we cannot answer more messages today. Please try again tomorrow."
#: How long the mark of an answered request is kept: far longer than a redelivery can take.
ANSWERED_TTL_S = 7 * 24 * 3600
#: Model failures worth another try; anything else goes straight to the fallback reply.
RETRIABLE_MODEL_ERRORS = (
    openai.RateLimitError,
    openai.InternalServerError,
    openai.APITimeoutError,
    openai.APIConnectionError,
)
MODEL_RETRIES = RetryPolicy(attempts=3, first_delay_s=0.5, max_delay_s=4.0)


def answered_key(request_id: str) -> str:
    return f"answered:{request_id}"


@dataclass
class Models:
    """One client per distinct model configuration, shared by every turn that uses it.

    At most ``max_clients`` are kept (tenants can make as many configs as they like): the
    least recently used is dropped and its client closed once its calls have ended.
    """

    demo: ChatModel = field(default_factory=DemoChatModel)
    #: Model calls run on a loop of their own (``core.ai.model_thread``).
    thread: ModelThread = field(default_factory=ModelThread)
    max_clients: int = 64
    make_client: Callable[[ModelSettings], ChatModel] = OpenAIChatModel
    _clients: OrderedDict[ModelSettings, ThreadedModel] = field(default_factory=OrderedDict)
    _policy: tuple[Settings, ModelPolicy] | None = None

    def _policy_for(self, settings: Settings) -> ModelPolicy:
        if self._policy is None or self._policy[0] is not settings:
            self._policy = (settings, ModelPolicy(settings))
        return self._policy[1]

    def for_chatbot(
        self, chatbot: Mapping[str, Any], deps: PipelineDeps, workspace_id: str = ""
    ) -> ChatModel:
        llm: Mapping[str, Any] = chatbot.get("llm") or {}
        sealed = llm.get("api_key")
        if isinstance(sealed, str) and sealed.startswith(SEALED):
            # The chatbots service stores the key sealed; it is opened only to make the call.
            llm = {**llm, "api_key": deps.secrets.open(sealed)}
        try:
            settings = self._policy_for(deps.settings).resolve(llm, workspace_id)
        except ModelRefused as refused:
            label = str(llm.get("model") or deps.settings.llm_model or "refused")
            return RefusedModel(label, refused)
        if settings is None:
            return self.demo
        client = self._clients.get(settings)
        if client is not None:
            self._clients.move_to_end(settings)
            return client
        client = self._clients[settings] = ThreadedModel(
            self.thread, functools.partial(self.make_client, settings), settings.model
        )
        while len(self._clients) > self.max_clients:
            _, evicted = self._clients.popitem(last=False)
            evicted.retire()
        return client


@dataclass
class Turn:
    """What happened in one turn, for operators and for replaying it (``switchboard replay``)."""

    model: str
    messages: list[Message]
    tools: list[ToolSpec] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    result: TurnResult = field(default_factory=TurnResult)
    failure: str = ""
    attempts: int = 0
    latency_s: float = 0.0
    answer: str = ""  # what the user was sent: the model's text, or a fallback or limit reply

    @property
    def answered(self) -> bool:
        return not self.failure and not self.result.bound and bool(self.result.text.strip())

    def event_data(self) -> dict[str, Any]:
        rounds = self.result.rounds
        data: dict[str, Any] = {
            "model": self.model,
            "parameters": self.parameters,
            "messages": self.messages,
            "tools": self.tools,
            "attempts": self.attempts,
            "prompt_tokens": self.result.prompt_tokens,
            "completion_tokens": self.result.completion_tokens,
            "latency_s": round(self.latency_s, 4),
            "answer": self.answer,
            **self.result.record(),
        }
        if rounds:
            data["finish_reason"] = rounds[-1].finish_reason
        if self.failure:
            data["failure"] = self.failure
        return data


def follow_up(turn: Turn) -> tuple[str, str]:
    """The conversation action the turn's tools accepted, if any: a handoff outranks a close."""
    accepted = {
        CONVERSATION_ACTIONS[o["name"]]: json.loads(o["arguments"] or "{}")
        for o in turn.result.outcomes
        if o["name"] in CONVERSATION_ACTIONS and o["ok"]
    }
    for action, reason_field in (("handoff", "reason"), ("close", "summary")):
        if action in accepted:
            arguments = accepted[action]
            reason = arguments.get(reason_field, "") if isinstance(arguments, dict) else ""
            return action, str(reason)
    return "", ""


class AIStage:
    def __init__(self, deps: PipelineDeps, models: Models | None = None) -> None:
        self.deps = deps
        # On the deps' model thread, which the worker closes with its model clients at shutdown.
        self.models = models or Models(
            thread=deps.models, max_clients=deps.settings.ai_max_model_clients
        )
        self.budget = TokenBudget(deps.redis, deps.settings)

    async def handle(self, event: Any) -> None:
        """One request, start to end; failures end in the dead-letter topic, never escape."""
        await handle_one(event, STAGE, AgentRequest, self.answer, lambda r: r.request_id)

    async def answer(self, request: AgentRequest) -> None:
        redis = self.deps.redis
        if await redis.exists(answered_key(request.request_id)):
            return
        application = await self.deps.applications.get(request.application_id, request.workspace_id)
        chatbot: Mapping[str, Any] = application.get("chatbot") or {}
        spent = await self.budget.spent(request.workspace_id, request.application_id, application)
        if spent is not None:
            await self._over_budget(request, spent)
            return
        model = self.models.for_chatbot(chatbot, self.deps, request.workspace_id)
        tools, _ = await self.deps.tools.offered(chatbot, request.workspace_id)
        turn = Turn(
            model=model.label,
            messages=turn_messages(
                application,
                chatbot,
                request.context or [],
                request.text,
                request.message_id,
            ),
            tools=tools,
            parameters=model.parameters,
        )
        began = time.monotonic()
        await self._run(request, model, turn, TurnBounds.resolve(chatbot, self.deps.settings))
        turn.latency_s = time.monotonic() - began
        if turn.answered:
            text = turn.result.text
        elif turn.result.bound:
            text = str(chatbot.get("limit_reply") or LIMIT_REPLY)
        else:
            text = str(chatbot.get("fallback_reply") or FALLBACK_REPLY)
        turn.answer = text
        then_action, then_reason = follow_up(turn)
        answer = bot_answer(
            request,
            text,
            created_at=time.time(),
            then_action=then_action,
            then_reason=then_reason,
        )
        kind = "turn.failed" if turn.failure else "turn.completed"
        await publish_all(
            [
                Send(messages_outbound, request.conversation_id, answer),
                event_of(request, kind, request.request_id, data=turn.event_data()),
            ]
        )
        if turn.result.rounds:
            await self.deps.usage.record(
                request.request_id,
                workspace_id=request.workspace_id,
                application_id=request.application_id,
                conversation_id=request.conversation_id,
                model=turn.result.model,
                prompt_tokens=turn.result.prompt_tokens,
                completion_tokens=turn.result.completion_tokens,
            )
            if model is not self.models.demo:
                await self.budget.spend(
                    request.request_id,
                    request.workspace_id,
                    request.application_id,
                    turn.result.prompt_tokens + turn.result.completion_tokens,
                )
        await redis.set(answered_key(request.request_id), b"1", ex=ANSWERED_TTL_S)

    async def _over_budget(self, request: AgentRequest, spent: BudgetSpent) -> None:
        """Answer without the model, and tell operators which budget is spent."""
        answer = bot_answer(request, BUDGET_REPLY, created_at=time.time())
        await publish_all(
            [
                Send(messages_outbound, request.conversation_id, answer),
                event_of(request, "budget.exceeded", request.request_id, data=spent.event_data()),
            ]
        )
        log.info(
            "%s: %s %s tokens_per_day spent (%d of %d)",
            STAGE,
            spent.scope,
            request.application_id if spent.scope == "application" else request.workspace_id,
            spent.used,
            spent.limit,
        )
        await self.deps.redis.set(answered_key(request.request_id), b"1", ex=ANSWERED_TTL_S)

    async def _run(
        self, request: AgentRequest, model: ChatModel, turn: Turn, bounds: TurnBounds
    ) -> None:
        """The turn within its time limit; on failure, ``turn`` says why."""
        on_delta = self._streamer(request) if request.channel == WEB_CHANNEL else None

        async def complete(messages: Sequence[Message], tools: Sequence[ToolSpec]) -> Completion:
            return await self._complete(request, model, turn, messages, tools, on_delta)

        async def execute(round_no: int, calls: Sequence[ToolCall]) -> list[ToolOutcome]:
            return await self._execute(request, round_no, calls)

        try:
            async with asyncio.timeout(self.deps.settings.ai_turn_timeout_s):
                await run_turn(complete, turn.messages, turn.tools, execute, bounds, turn.result)
        except TimeoutError:
            turn.failure = f"no answer within {self.deps.settings.ai_turn_timeout_s:g}s"
        except ModelFailed as failed:
            turn.failure = str(failed)
        except (ModelRefused, EgressRefused) as refused:
            turn.failure = f"model refused: {refused.message}"

    async def _complete(
        self,
        request: AgentRequest,
        model: ChatModel,
        turn: Turn,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec],
        on_delta: OnDelta | None,
    ) -> Completion:
        """One model call, retried on rate limits, 5xx, timeouts and lost connections."""
        tries = 0
        while True:
            tries += 1
            turn.attempts += 1
            try:
                return await model.complete(messages, tools, on_delta)
            except RETRIABLE_MODEL_ERRORS as error:
                if tries >= MODEL_RETRIES.attempts:
                    raise ModelFailed(f"{type(error).__name__}: {error}") from error
                log.warning("%s: model failed (%r), retrying", STAGE, error)
                await asyncio.sleep(MODEL_RETRIES.delay(tries))
                if on_delta is not None:
                    await self._push(request, "answer.reset", {})
            except openai.APIError as error:
                raise ModelFailed(f"{type(error).__name__}: {error}") from error

    async def _execute(
        self, request: AgentRequest, round_no: int, calls: Sequence[ToolCall]
    ) -> list[ToolOutcome]:
        """Send the round's calls to the function-call stage and wait for every result."""
        outcomes: dict[int, ToolOutcome] = {}
        sent: dict[int, FunctionCall] = {}
        for index, call in enumerate(calls):
            try:
                arguments = call.parsed_arguments()
            except ValueError as error:  # the model wrote something that is not an object
                outcomes[index] = ToolOutcome.failed(call, str(error))
                continue
            call_id = ids.function_call_id(
                request.request_id, round_no, index, call.name, call.arguments
            )
            sent[index] = FunctionCall(
                **request.envelope(call_id, time.time()),
                request_id=request.request_id,
                call_id=call_id,
                name=call.name,
                arguments=arguments,
            )
        if sent:
            call_ids = [c.call_id for c in sent.values()]
            self.deps.tool_results.expect(call_ids)
            await publish_all(
                [Send(function_calls, request.conversation_id, c) for c in sent.values()]
            )
            results = await self.deps.tool_results.wait(call_ids)
            for index, function_call in sent.items():
                result = results[function_call.call_id]
                content = (
                    json.dumps({"error": result.error})
                    if result.error
                    else json.dumps(result.result, ensure_ascii=False)
                )
                call = calls[index]
                outcomes[index] = ToolOutcome(
                    call.id, call.name, call.arguments, content, ok=not result.error
                )
        return [outcomes[index] for index in range(len(calls))]

    def _streamer(self, request: AgentRequest) -> OnDelta:
        async def on_delta(delta: str) -> None:
            await self._push(request, "answer.delta", {"delta": delta})

        return on_delta

    async def _push(self, request: AgentRequest, event: str, data: dict[str, Any]) -> None:
        await self.deps.realtime.to_conversation(
            request.conversation_id,
            event,
            {"conversation_id": request.conversation_id, "request_id": request.request_id, **data},
        )


class ModelFailed(Exception):
    """The model gave no answer after its retries; the turn ends with the fallback reply."""


@app.agent(agent_requests)
async def ai_agent(stream: Any) -> None:
    deps = await deps_of(app)
    manual = stream.noack()
    if not deps.settings.ai_agent_enabled:
        async for event in manual.events():  # something else answers: just keep up
            await skips.ack(manual, event)
        return
    handle = AIStage(deps).handle
    await run_keyed(manual, handle, STAGE, app.consumer, deps.settings.ai_max_in_flight)
