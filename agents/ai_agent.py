"""The AI agent: answers each turn of a bot-mode conversation with the chatbot's model.

agent.requests → messages.outbound, conversation.events; streams the answer's text to web
conversations through Redis as it arrives. Key: conversation id. Turns of different
conversations run side by side (``agents.keyed``), turns of one conversation in order, and a
request is acked only when it and every earlier request of its partition are answered.

A redelivered request is answered once: the answer's id comes from the request's, a Redis mark
skips the model for a request already answered, and the delivery agent drops a repeat. Model
failures (rate limits, 5xx, timeouts, lost connections) are retried with backoff within the
turn's time limit; after that the chatbot's fallback reply is sent, and operators see why.

Tools come next: the function-call stage is not wired in yet, so turns offer the model none.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import openai

from agents.context import PipelineDeps, deps_of
from agents.continuity import OffsetContinuity
from agents.failures import GaveUp, RetryPolicy, dead_letter, with_retries
from agents.keyed import KeyedRunner
from agents.outputs import Send, event_of, publish_all
from core.errors import ValidationFailed
from core.llm import (
    ChatModel,
    Completion,
    DemoChatModel,
    Message,
    ModelSettings,
    OnDelta,
    OpenAIChatModel,
)
from core.prompts import turn_messages
from streams.app import app
from streams.records import AgentRequest, UndecodableRecord, bot_answer, decode
from streams.topics import agent_requests, messages_outbound

log = logging.getLogger(__name__)

STAGE = "ai-agent"
FALLBACK_REPLY = "Sorry, I cannot answer right now. A member of our team will get back to you."
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
    """One client per distinct model configuration, shared by every turn that uses it."""

    demo: ChatModel = field(default_factory=DemoChatModel)
    _clients: dict[ModelSettings, OpenAIChatModel] = field(default_factory=dict)

    def for_chatbot(self, chatbot: Mapping[str, Any], deps: PipelineDeps) -> ChatModel:
        settings = ModelSettings.resolve(chatbot.get("llm") or {}, deps.settings)
        if settings is None:
            return self.demo
        client = self._clients.get(settings)
        if client is None:
            client = self._clients[settings] = OpenAIChatModel(settings)
        return client


@dataclass
class Turn:
    """What happened in one turn, for operators and for replaying it."""

    model: str
    messages: list[Message]
    completion: Completion | None = None
    failure: str = ""
    attempts: int = 0

    def event_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "model": self.model,
            "messages": self.messages,
            "attempts": self.attempts,
        }
        if self.completion is not None:
            data |= {
                "finish_reason": self.completion.finish_reason,
                "prompt_tokens": self.completion.usage.prompt_tokens,
                "completion_tokens": self.completion.usage.completion_tokens,
                "latency_s": round(self.completion.latency_s, 4),
            }
        if self.failure:
            data["failure"] = self.failure
        return data


class AIStage:
    def __init__(self, deps: PipelineDeps, models: Models | None = None) -> None:
        self.deps = deps
        self.models = models or Models()

    async def handle(self, event: Any) -> None:
        """One request, start to end; failures end in the dead-letter topic, never escape."""
        try:
            request = decode(event.message.value)
            if not isinstance(request, AgentRequest):
                raise ValidationFailed(
                    f"{type(request).__name__} does not belong on agent.requests"
                )
            await with_retries(lambda: self.answer(request), f"{STAGE}: {request.request_id}")
        except GaveUp as failure:
            await dead_letter(event, STAGE, failure.error, failure.attempts)
        except (UndecodableRecord, ValidationFailed) as error:  # a poison record
            await dead_letter(event, STAGE, error, 1)

    async def answer(self, request: AgentRequest) -> None:
        redis = self.deps.redis
        if await redis.exists(answered_key(request.request_id)):
            return
        application = await self.deps.applications.get(request.application_id, request.workspace_id)
        chatbot: Mapping[str, Any] = application.get("chatbot") or {}
        model = self.models.for_chatbot(chatbot, self.deps)
        turn = Turn(
            model=model.label,
            messages=turn_messages(
                application,
                chatbot,
                request.context or [],
                request.text,
                request.message_id,
            ),
        )
        await self._complete(request, model, turn)
        if turn.completion is not None and turn.completion.text.strip():
            text = turn.completion.text
        else:
            text = str(chatbot.get("fallback_reply") or FALLBACK_REPLY)
        answer = bot_answer(request, text, created_at=time.time())
        kind = "turn.completed" if not turn.failure else "turn.failed"
        await publish_all(
            [
                Send(messages_outbound, request.conversation_id, answer),
                event_of(request, kind, request.request_id, data=turn.event_data()),
            ]
        )
        if turn.completion is not None:
            await self.deps.usage.record(
                request.request_id,
                workspace_id=request.workspace_id,
                application_id=request.application_id,
                conversation_id=request.conversation_id,
                model=turn.completion.model,
                prompt_tokens=turn.completion.usage.prompt_tokens,
                completion_tokens=turn.completion.usage.completion_tokens,
            )
        await redis.set(answered_key(request.request_id), b"1", ex=ANSWERED_TTL_S)

    async def _complete(self, request: AgentRequest, model: ChatModel, turn: Turn) -> None:
        """Call the model within the turn's time limit; on failure, say why in ``turn``."""
        on_delta = self._streamer(request) if request.channel == "web" else None
        try:
            async with asyncio.timeout(self.deps.settings.ai_turn_timeout_s):
                while True:
                    turn.attempts += 1
                    try:
                        turn.completion = await model.complete(turn.messages, [], on_delta)
                        return
                    except RETRIABLE_MODEL_ERRORS as error:
                        if turn.attempts >= MODEL_RETRIES.attempts:
                            turn.failure = f"{type(error).__name__}: {error}"
                            return
                        log.warning("%s: model failed (%r), retrying", STAGE, error)
                        await asyncio.sleep(MODEL_RETRIES.delay(turn.attempts))
                        if on_delta is not None:
                            await self._push(request, "answer.reset", {})
                    except openai.APIError as error:
                        turn.failure = f"{type(error).__name__}: {error}"
                        return
        except TimeoutError:
            turn.failure = f"no answer within {self.deps.settings.ai_turn_timeout_s:g}s"

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


@app.agent(agent_requests)
async def ai_agent(stream: Any) -> None:
    deps = await deps_of(app)
    manual = stream.noack()
    if not deps.settings.ai_agent_enabled:
        async for event in manual.events():  # something else answers: just keep up
            await manual.ack(event)
        return
    runner = KeyedRunner(AIStage(deps).handle, manual.ack, deps.settings.ai_max_in_flight)
    continuity = OffsetContinuity(STAGE, app.consumer)
    try:
        async for event in manual.events():
            for admitted in await continuity.admit([event]):
                await runner.submit(admitted.message.key, admitted)
    finally:
        await runner.cancel()
