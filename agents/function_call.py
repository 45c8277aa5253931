"""The function-call agent: runs each tool the model asked for, once, and says how it went.

function.calls → function.results. Key: conversation id. Side effects: the tenant's endpoint
(through ``core.security.egress``, with the tool's secrets opened only for the call), and each
result kept in Redis by call id. Calls of different conversations run side by side, a conversation's
in order (``agents.runtime.keyed``).

Fails closed: a tool the chatbot does not enable, a tenant tool that does not exist or is
disabled, arguments that do not fit the schema and an endpoint that is refused or fails all
come back as an error result the model reads, and nothing is called. A repeated call (a
redelivered record, or a turn repeated after a crash) gets the kept result, so a tool runs once
per call id; across a crash between the call and keeping its result, the endpoint sees the call
again with the same ``Idempotency-Key``.

Arguments are checked in a thread with a time bound, the schema's patterns on RE2
(``core.ai.tool_schema``): a tenant's schema cannot hold the event loop every tenant's calls
share, and a check that runs out of time is the call's error result, not a record left unacked
to stall the worker again when it is redelivered.

Also here: the listener that hands function.results to the turns waiting for them.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from agents.runtime.context import PipelineDeps, deps_of
from agents.runtime.failures import handle_one
from agents.runtime.keyed import run_keyed
from agents.runtime.outputs import Send, publish_all
from agents.runtime.tool_results import keep_result, kept_result
from core.ai.http_tools import call_http_tool
from core.ai.tool_schema import SchemaLimits, tool_schemas
from core.ai.tools import BUILTINS, CONVERSATION_ACTIONS, CONVERSATION_INFO, enabled_names
from core.cached.applications import UnknownApplication
from core.errors import SwitchboardError, ValidationFailed
from streams.app import app
from streams.records import FunctionCall, FunctionResult, UndecodableRecord, decode
from streams.topics import function_calls, function_results

log = logging.getLogger(__name__)

STAGE = "function-call"
MAX_IN_FLIGHT = 64


class FunctionCallStage:
    def __init__(self, deps: PipelineDeps) -> None:
        self.deps = deps
        self.schemas = tool_schemas(SchemaLimits.from_settings(deps.settings))

    async def handle(self, event: Any) -> None:
        await handle_one(event, STAGE, FunctionCall, self.answer, lambda call: call.call_id)

    async def answer(self, call: FunctionCall) -> None:
        result = await kept_result(self.deps.redis, call.call_id)
        if result is None:
            result = await self.run(call)
            await keep_result(self.deps.redis, result)
        await publish_all([Send(function_results, call.conversation_id, result)])

    async def run(self, call: FunctionCall) -> FunctionResult:
        began = time.monotonic()
        outcome, error = None, ""
        try:
            outcome = await self._outcome(call)
        except SwitchboardError as failure:
            error = failure.message
            if failure.details is not None:
                error = f"{error}: {json.dumps(failure.details, ensure_ascii=False)}"
        log.info(
            "%s: %s %s in %.3fs%s",
            STAGE,
            call.name,
            call.call_id,
            time.monotonic() - began,
            f" failed: {error}" if error else "",
        )
        return FunctionResult(
            **call.envelope(call.call_id, time.time()),
            request_id=call.request_id,
            call_id=call.call_id,
            name=call.name,
            result=outcome,
            error=error,
        )

    async def _outcome(self, call: FunctionCall) -> dict[str, Any]:
        try:
            application = await self.deps.applications.get(call.application_id, call.workspace_id)
        except UnknownApplication as unknown:
            raise ValidationFailed(f"no such application: {unknown.message}") from unknown
        names = enabled_names(application.get("chatbot") or {})
        arguments = call.arguments or {}
        if call.name not in names:
            raise ValidationFailed(f"the tool {call.name!r} is not enabled for this chatbot")
        if call.name in BUILTINS:
            parameters = BUILTINS[call.name]["function"]["parameters"]
            await self.schemas.check_arguments(parameters, arguments)
            return await self._builtin(call, arguments)
        tool = (await self.deps.tools.tenant_tools(call.workspace_id)).get(call.name)
        if tool is None or not tool.enabled:
            raise ValidationFailed(f"the tool {call.name!r} does not exist or is disabled")
        return await call_http_tool(
            tool, arguments, call.call_id, self.deps.egress, self.deps.secrets, self.schemas
        )

    async def _builtin(self, call: FunctionCall, arguments: Mapping[str, Any]) -> dict[str, Any]:
        if call.name in CONVERSATION_ACTIONS:
            # Applied by the delivery agent right after the turn's answer: see ``then_action``.
            after = {"handoff": "a human operator takes over", "close": "the conversation closes"}
            return {
                "status": "accepted",
                "note": f"After your reply {after[CONVERSATION_ACTIONS[call.name]]}.",
            }
        assert call.name == CONVERSATION_INFO
        document = await self.deps.store.conversation(call.conversation_id, call.workspace_id)
        if document is None:
            return {"conversation_id": call.conversation_id, "channel": call.channel}
        return {
            "conversation_id": call.conversation_id,
            "channel": document.get("channel", call.channel),
            "mode": document.get("mode", "bot"),
            "assigned": bool(document.get("assignee_id")),
            "started_at": _iso(document.get("created_at")),
            "updated_at": _iso(document.get("updated_at")),
        }


def _iso(seconds: object) -> str | None:
    if not isinstance(seconds, int | float):
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


@app.agent(function_calls)
async def function_call(stream: Any) -> None:
    deps = await deps_of(app)
    handle = FunctionCallStage(deps).handle
    await run_keyed(stream.noack(), handle, STAGE, app.consumer, MAX_IN_FLIGHT)


@app.agent(function_results)
async def tool_results(stream: Any) -> None:
    """Hands each result to the turn waiting for it on this worker (if any); keeps nothing."""
    deps = await deps_of(app)
    async for raw in stream:
        try:
            result = decode(raw)
        except UndecodableRecord:
            continue  # nobody waits for it; the turn finds real results in Redis anyway
        if isinstance(result, FunctionResult):
            deps.tool_results.deliver(result)
