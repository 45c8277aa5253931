"""A strict stand-in for an OpenAI-compatible chat-completions server, for tests.

Clients (the ``openai`` SDK, ``core.ai.llm``) talk to it over real HTTP on 127.0.0.1, so the
requests they build and the way they read answers, streams and errors are exercised for real.
It refuses what the real API refuses, and what it does not simulate, so a test cannot pass on
a request OpenAI would reject. Replies are scripted in order (``script``) or computed from each
request (``respond_with``); otherwise it echoes the last user message.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, NamedTuple, NoReturn, Self, TypeAlias

from aiohttp import web
from aiohttp.typedefs import Handler

JSON: TypeAlias = dict[str, Any]


@dataclass(frozen=True)
class Text:
    """The model answers with text."""

    text: str
    latency_s: float = 0.0
    #: Pause between streamed chunks, so a client can be seen showing text as it arrives.
    chunk_delay_s: float = 0.0


@dataclass(frozen=True)
class Call:
    """One tool call. A string ``arguments`` is sent as written, so it may be broken on purpose."""

    name: str
    arguments: Mapping[str, Any] | str = field(default_factory=dict)
    id: str | None = None


@dataclass(frozen=True)
class ToolCalls:
    """The model calls tools (several at once are parallel calls), maybe saying something too."""

    calls: Sequence[Call]
    text: str | None = None
    latency_s: float = 0.0

    def __post_init__(self) -> None:
        if not self.calls:
            raise ValueError("ToolCalls needs at least one Call")


@dataclass(frozen=True)
class Error:
    """The API fails with this status, as in an outage (5xx) or under a rate limit (429)."""

    status: int
    message: str = "The server had an error while processing your request."
    latency_s: float = 0.0

    def __post_init__(self) -> None:
        if not 400 <= self.status <= 599:
            raise ValueError(f"Error status must be 4xx or 5xx, not {self.status}")


@dataclass(frozen=True)
class Hang:
    """No answer until the client gives up or the server stops: tests the caller's timeout."""

    latency_s: float = 0.0


Reply: TypeAlias = Text | ToolCalls | Error | Hang
Responder: TypeAlias = Callable[[JSON], Reply]


class FakeLLM:
    """``async with FakeLLM() as llm:`` serves ``llm.base_url`` until the block ends.

    ``requests`` holds the valid request bodies, ``rejected`` (status, message) of refused ones.
    A reply a real model could not give (calling a tool the request did not offer, say) is
    answered with a 500 and makes the ``async with`` block fail, so a wrong script cannot hide.
    """

    def __init__(self, api_key: str = "test-key", models: Sequence[str] = ("fake-model",)) -> None:
        self.api_key = api_key
        self.models = tuple(models)
        #: Added to every request's delay, e.g. to give benchmarks a realistic model latency.
        self.latency_s = 0.0
        self.requests: list[JSON] = []
        self.rejected: list[tuple[int, str]] = []
        self.script_errors: list[str] = []
        self._script: deque[Reply] = deque()
        self._responder: Responder | None = None
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None
        self._in_flight: set[asyncio.Task[Any]] = set()

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("FakeLLM is not running")
        return self._base_url

    def script(self, *replies: Reply) -> None:
        """Queue replies; each request takes the next one."""
        self._script.extend(replies)

    def respond_with(self, responder: Responder | None) -> None:
        """Answer from the request once the script is used up, e.g. for many conversations."""
        self._responder = responder

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("FakeLLM is already running")
        app = web.Application(middlewares=[self._errors])
        app.router.add_post("/v1/chat/completions", self._chat_completions)
        app.router.add_get("/v1/models", self._list_models)
        # handler_cancellation: a client that hangs up cancels its request, as a real server does.
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        self._runner, self._base_url = runner, f"http://{host}:{port}/v1"

    async def stop(self) -> None:
        """Drop requests still in flight (a Hang never ends by itself), then close the server."""
        if self._runner is None:
            return
        in_flight = list(self._in_flight)
        for task in in_flight:
            task.cancel()
        await asyncio.gather(*in_flight, return_exceptions=True)
        await self._runner.cleanup()
        self._runner = self._base_url = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
        if exc is None and self.script_errors:
            raise AssertionError("FakeLLM was scripted wrongly: " + "; ".join(self.script_errors))

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Authenticates every route and answers refusals in OpenAI's error shape."""
        try:
            self._authenticate(request)
            return await handler(request)
        except _Rejected as rejected:
            status, message = rejected.status, rejected.message
            param, code = rejected.param, rejected.code
        except web.HTTPException as error:  # unknown route or method
            status, message = error.status, f"Invalid URL ({request.method} {request.path})"
            param, code = None, None
        self.rejected.append((status, message))
        return _error_response(status, message, param=param, code=code)

    def _authenticate(self, request: web.Request) -> None:
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or not key:
            raise _Rejected(
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                status=401,
            )
        if key != self.api_key:
            shown = f"{key[:3]}***{key[-2:]}" if len(key) > 8 else "***"
            raise _Rejected(
                f"Incorrect API key provided: {shown}.", status=401, code="invalid_api_key"
            )

    async def _list_models(self, request: web.Request) -> web.Response:
        models = [
            {"id": model, "object": "model", "created": 0, "owned_by": "switchboard-tests"}
            for model in self.models
        ]
        return web.json_response({"object": "list", "data": models})

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        body = _validate_request(await _read_json(request), self.models)
        self.requests.append(body)
        task = asyncio.current_task()
        assert task is not None
        self._in_flight.add(task)
        try:
            reply = self._next_reply(body)
            await asyncio.sleep(self.latency_s + reply.latency_s)
            return await self._answer(request, body, reply)
        finally:
            self._in_flight.discard(task)

    def _next_reply(self, request: JSON) -> Reply:
        if self._script:
            return self._script.popleft()
        if self._responder is not None:
            return self._responder(request)
        users = [m for m in request["messages"] if m["role"] == "user"]
        return Text("echo: " + (_text_of(users[-1]["content"]) if users else ""))

    async def _answer(self, request: web.Request, body: JSON, reply: Reply) -> web.StreamResponse:
        if isinstance(reply, Hang):
            await _hang()
        if isinstance(reply, Error):
            return _scripted_error(reply)
        problem = _script_problem(reply, body)
        if problem is not None:
            self.script_errors.append(problem)
            return _error_response(500, f"FakeLLM script: {problem}")
        output = _output(reply, body)
        head = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "created": int(time.time()),
            "model": body["model"],
        }
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            delay = reply.chunk_delay_s if isinstance(reply, Text) else 0.0
            chunks = _chunks(output, head, include_usage=include_usage)
            return await _stream(request, chunks, delay)
        return web.json_response(_completion(output, head))


# --- Validation: what the real API refuses -----------------------------------------------------


class _Rejected(Exception):
    """A request the real API would refuse; the middleware answers it with the error JSON."""

    def __init__(
        self, message: str, param: str | None = None, *, status: int = 400, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.message, self.param, self.status, self.code = message, param, status, code


_FIELDS = frozenset(
    {"model", "messages", "tools", "tool_choice", "temperature", "max_tokens"}
    | {"max_completion_tokens", "stream", "stream_options", "parallel_tool_calls"}
)
_ROLE_FIELDS = {
    "system": {"role", "content", "name"},
    "developer": {"role", "content", "name"},
    "user": {"role", "content", "name"},
    # The rest are what the SDK writes back when a response message is reused as input.
    "assistant": {"role", "content", "name", "tool_calls"}
    | {"refusal", "annotations", "audio", "function_call"},
    "tool": {"role", "content", "tool_call_id"},
}
_PART_TYPES = {
    "user": {"text", "image_url", "input_audio", "file"},
    "assistant": {"text", "refusal"},
}
_FUNCTION_FIELDS = {"name", "description", "parameters", "strict"}
_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")


def _check(condition: bool, message: str, param: str | None) -> None:
    if not condition:
        raise _Rejected(message, param)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _validate_request(body: object, models: Sequence[str]) -> JSON:
    """The body if the real API would accept it (fields the fake ignores are refused too)."""
    if not isinstance(body, dict):
        raise _Rejected("The request body must be a JSON object.")
    for name in body:
        _check(name in _FIELDS, f"Unrecognized request argument supplied: {name}", name)
    # Like the real API, an explicit null means "not given".
    given = {name: value for name, value in body.items() if value is not None}
    model = given.get("model")
    _check(isinstance(model, str), "Missing required parameter: 'model'.", "model")
    if model not in models:
        raise _Rejected(
            f"The model `{model}` does not exist or you do not have access to it.",
            "model",
            status=404,
            code="model_not_found",
        )
    _validate_messages(given.get("messages"))
    tool_names = _validate_tools(given["tools"]) if "tools" in given else None
    _validate_tool_choice(given.get("tool_choice"), tool_names)
    _validate_sampling(given)
    _validate_stream(given)
    return body


def _validate_messages(messages: object) -> None:
    if not isinstance(messages, list):
        raise _Rejected("Missing required parameter: 'messages'.", "messages")
    _check(bool(messages), "[] is too short - 'messages'", "messages")
    for index, message in enumerate(messages):
        _validate_message(message, f"messages.[{index}]")
    _validate_tool_answers(messages)


def _validate_message(message: object, where: str) -> None:
    if not isinstance(message, dict):
        raise _Rejected(f"Invalid type for '{where}': expected an object.", where)
    role = message.get("role")
    if not isinstance(role, str) or role not in _ROLE_FIELDS:
        raise _Rejected(
            f"Invalid value: {role!r}. Supported values are: 'system', 'developer', 'user', "
            "'assistant' and 'tool'.",
            f"{where}.role",
        )
    for key in message:
        _check(
            key in _ROLE_FIELDS[role],
            f"Additional properties are not allowed ('{key}' was unexpected) - '{where}'",
            f"{where}.{key}",
        )
    name = message.get("name")
    _check(name is None or isinstance(name, str), "'name' must be a string.", f"{where}.name")
    if role == "assistant":
        _validate_assistant(message, where)
    else:
        _validate_content(message.get("content"), role, f"{where}.content")
    if role == "tool":
        call_id = message.get("tool_call_id")
        param = f"{where}.tool_call_id"
        _check(isinstance(call_id, str), f"Missing required parameter: '{param}'.", param)


def _validate_content(content: object, role: str, param: str) -> None:
    if isinstance(content, str):
        return
    _check(content is not None, "Invalid value for 'content': expected a string, got null.", param)
    if not isinstance(content, list) or not content:
        raise _Rejected(
            f"Invalid type for '{param}': expected a string or an array of content parts.", param
        )
    allowed = _PART_TYPES.get(role, {"text"})
    for index, part in enumerate(content):
        where = f"{param}.[{index}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if not isinstance(kind, str) or kind not in allowed:
            raise _Rejected(
                f"Invalid content part for a {role} message: the type must be one of "
                f"{sorted(allowed)}.",
                f"{where}.type",
            )
        valid = kind in part and (kind not in {"text", "refusal"} or isinstance(part[kind], str))
        _check(valid, f"Missing required parameter: '{where}.{kind}'.", f"{where}.{kind}")


def _validate_assistant(message: JSON, where: str) -> None:
    calls = message.get("tool_calls")
    if calls is None or message.get("content") is not None:
        _validate_content(message.get("content"), "assistant", f"{where}.content")
    if calls is None:
        return
    param = f"{where}.tool_calls"
    _check(isinstance(calls, list) and bool(calls), f"'{param}' must be a non-empty array.", param)
    for index, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        _check(
            isinstance(call, dict)
            and isinstance(call.get("id"), str)
            and call.get("type") == "function"
            and isinstance(function, dict)
            and isinstance(function.get("name"), str)
            and isinstance(function.get("arguments"), str),
            "A tool call needs an 'id', 'type': 'function' and a 'function' with 'name' and "
            "'arguments' (a JSON string).",
            f"{param}.[{index}]",
        )


def _validate_tool_answers(messages: list[JSON]) -> None:
    """Every call must be answered, right after the assistant message that made it."""
    open_ids: list[str] = []
    for index, message in enumerate(messages):
        if message["role"] != "tool":
            _require_answered(open_ids, index)
            open_ids = [call["id"] for call in message.get("tool_calls") or []]
            continue
        call_id = message["tool_call_id"]
        _check(
            call_id in open_ids,
            "Invalid parameter: messages with role 'tool' must be a response to a preceding "
            f"message with 'tool_calls' (none waits for an answer with id {call_id!r}).",
            f"messages.[{index}].tool_call_id",
        )
        open_ids.remove(call_id)
    _require_answered(open_ids, len(messages))


def _require_answered(open_ids: list[str], index: int) -> None:
    _check(
        not open_ids,
        "An assistant message with 'tool_calls' must be followed by tool messages responding "
        "to each 'tool_call_id'. The following tool_call_ids did not have response messages: "
        + ", ".join(open_ids),
        f"messages.[{index}]",
    )


def _validate_tools(tools: object) -> list[str]:
    if not isinstance(tools, list):
        raise _Rejected("Invalid type for 'tools': expected an array.", "tools")
    _check(bool(tools), "[] is too short - 'tools'", "tools")
    return [_validate_tool(tool, f"tools.[{index}]") for index, tool in enumerate(tools)]


def _validate_tool(tool: object, where: str) -> str:
    function = tool.get("function") if isinstance(tool, dict) else None
    if not isinstance(tool, dict) or tool.get("type") != "function" or len(tool) != 2:
        raise _Rejected("A tool must be {'type': 'function', 'function': {...}}.", where)
    if not isinstance(function, dict):
        raise _Rejected(f"Missing required parameter: '{where}.function'.", f"{where}.function")
    for key in function:
        param = f"{where}.function.{key}"
        _check(key in _FUNCTION_FIELDS, f"Unrecognized request argument supplied: {param}", param)
    for key, kind in (("parameters", dict), ("description", str), ("strict", bool)):
        if key in function:
            param = f"{where}.function.{key}"
            _check(isinstance(function[key], kind), f"Invalid type for '{param}'.", param)
    name = function.get("name")
    if not isinstance(name, str) or not _TOOL_NAME.fullmatch(name):
        raise _Rejected(
            f"Invalid '{where}.function.name': expected a string matching "
            "'^[a-zA-Z0-9_-]{1,64}$'.",
            f"{where}.function.name",
        )
    return name


def _validate_tool_choice(choice: object, tool_names: list[str] | None) -> None:
    if choice is None:
        return
    _check(
        tool_names is not None,
        "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are "
        "specified.",
        "tool_choice",
    )
    if choice in ("none", "auto", "required"):
        return
    function = choice.get("function") if isinstance(choice, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    _check(
        isinstance(choice, dict)
        and choice.get("type") == "function"
        and name in (tool_names or []),
        "Invalid value for 'tool_choice': expected 'none', 'auto', 'required' or "
        "{'type': 'function', 'function': {'name': <one of the tools>}}.",
        "tool_choice",
    )


def _validate_sampling(given: JSON) -> None:
    if "temperature" in given:
        value = given["temperature"]
        valid = (_is_int(value) or isinstance(value, float)) and 0 <= value <= 2
        _check(valid, "'temperature' must be a number from 0 to 2.", "temperature")
    for name in ("max_tokens", "max_completion_tokens"):
        if name in given:
            valid = _is_int(given[name]) and given[name] >= 1
            _check(valid, f"'{name}' must be a positive integer.", name)
    if "parallel_tool_calls" in given:
        valid = isinstance(given["parallel_tool_calls"], bool)
        _check(valid, "'parallel_tool_calls' must be a boolean.", "parallel_tool_calls")
        _check(
            "tools" in given,
            "Invalid value for 'parallel_tool_calls': 'parallel_tool_calls' is only allowed when "
            "'tools' are specified.",
            "parallel_tool_calls",
        )


def _validate_stream(given: JSON) -> None:
    _check(isinstance(given.get("stream", False), bool), "'stream' must be a boolean.", "stream")
    if "stream_options" not in given:
        return
    options = given["stream_options"]
    _check(
        given.get("stream") is True,
        "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
        "stream_options",
    )
    # include_obfuscation is accepted because the SDK offers it; the fake never obfuscates.
    _check(
        isinstance(options, dict)
        and set(options) <= {"include_usage", "include_obfuscation"}
        and all(isinstance(value, bool) for value in options.values()),
        "Invalid 'stream_options': expected {'include_usage': <boolean>}.",
        "stream_options",
    )


async def _read_json(request: web.Request) -> object:
    try:
        return await request.json()
    except ValueError:
        raise _Rejected(
            "We could not parse the JSON body of your request. The OpenAI API expects a JSON "
            "payload."
        ) from None


def _script_problem(reply: Text | ToolCalls, request: JSON) -> str | None:
    """Why a real model could not give this reply to this request, if it could not."""
    choice = request.get("tool_choice")
    if isinstance(reply, Text):
        forced = choice == "required" or isinstance(choice, dict)
        return f"a Text reply, but tool_choice {choice!r} forces a call" if forced else None
    offered = [tool["function"]["name"] for tool in request.get("tools") or []]
    unknown = [call.name for call in reply.calls if call.name not in offered]
    if unknown:
        return f"calls {unknown}, but the request offers the tools {offered}"
    if choice == "none":
        return "tool calls, but tool_choice is 'none'"
    if request.get("parallel_tool_calls") is False and len(reply.calls) > 1:
        return "parallel tool calls, but parallel_tool_calls is false"
    return None


# --- Answers: the OpenAI wire format -----------------------------------------------------------


class _WireCall(NamedTuple):
    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class _Output:
    """A reply made concrete: call ids assigned, arguments as JSON text, usage counted."""

    text: str | None
    calls: tuple[_WireCall, ...]
    finish_reason: str
    usage: JSON


def _output(reply: Text | ToolCalls, request: JSON) -> _Output:
    calls = tuple(
        _WireCall(
            call.id or f"call_{uuid.uuid4().hex[:24]}",
            call.name,
            call.arguments if isinstance(call.arguments, str) else json.dumps(dict(call.arguments)),
        )
        for call in (reply.calls if isinstance(reply, ToolCalls) else ())
    )
    prompt = sum(_words(_text_of(message.get("content"))) for message in request["messages"])
    written = [reply.text or ""] + [f"{call.name} {call.arguments}" for call in calls]
    completion = sum(_words(text) for text in written)
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    return _Output(reply.text, calls, "tool_calls" if calls else "stop", usage)


def _words(text: str) -> int:
    """Tokens are whitespace-separated words: deterministic, so tests can assert counts."""
    return len(text.split())


def _text_of(content: object) -> str:
    if isinstance(content, list):
        return " ".join(part["text"] for part in content if part.get("type") == "text")
    return content if isinstance(content, str) else ""


def _completion(output: _Output, head: JSON) -> JSON:
    message: JSON = {
        "role": "assistant",
        "content": output.text,
        "refusal": None,
        "annotations": [],
    }
    if output.calls:
        message["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in output.calls
        ]
    choice = {
        "index": 0,
        "message": message,
        "logprobs": None,
        "finish_reason": output.finish_reason,
    }
    return {**head, "object": "chat.completion", "choices": [choice], "usage": output.usage}


_PIECE = re.compile(r"\s*\S{1,4}|\s+")


def _chunks(output: _Output, head: JSON, *, include_usage: bool) -> Iterator[JSON]:
    """The chunks OpenAI streams: role, text pieces, call fragments, finish, usage."""
    head = {**head, "object": "chat.completion.chunk"}
    if include_usage:  # then every chunk carries usage, null until the last
        head["usage"] = None

    def chunk(delta: JSON, finish_reason: str | None = None) -> JSON:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return {**head, "choices": [choice]}

    first_content = None if output.text is None else ""
    yield chunk({"role": "assistant", "content": first_content, "refusal": None})
    for piece in _PIECE.findall(output.text or ""):
        yield chunk({"content": piece})
    for delta in _call_deltas(output.calls):
        yield chunk({"tool_calls": [delta]})
    yield chunk({}, output.finish_reason)
    if include_usage:
        yield {**head, "choices": [], "usage": output.usage}


def _call_deltas(calls: Sequence[_WireCall]) -> Iterator[JSON]:
    """Each call's deltas, taken round-robin so fragments of parallel calls interleave."""
    per_call = [_deltas_of(index, call) for index, call in enumerate(calls)]
    for round_ in itertools.zip_longest(*per_call):
        yield from (delta for delta in round_ if delta is not None)


def _deltas_of(index: int, call: _WireCall) -> list[JSON]:
    function = {"name": call.name, "arguments": ""}
    first = {"index": index, "id": call.id, "type": "function", "function": function}
    size = max(1, min(8, len(call.arguments) // 2))  # at least two fragments
    fragments = (call.arguments[i : i + size] for i in range(0, len(call.arguments), size))
    return [first, *({"index": index, "function": {"arguments": f}} for f in fragments)]


async def _stream(
    request: web.Request, chunks: Iterable[JSON], delay_s: float = 0.0
) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    for chunk in chunks:
        await response.write(f"data: {json.dumps(chunk, separators=(',', ':'))}\n\n".encode())
        if delay_s:
            await asyncio.sleep(delay_s)
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


async def _hang() -> NoReturn:
    """Waits until cancelled: by aiohttp when the client hangs up, or by FakeLLM.stop."""
    never: asyncio.Future[NoReturn] = asyncio.get_running_loop().create_future()
    await never


def _scripted_error(reply: Error) -> web.Response:
    if reply.status == 429:
        # "0" keeps tests fast. The openai SDK only honours 0 < retry-after <= 120 and otherwise
        # falls back to its own backoff (0.5 s and up), which callers with retries on will see.
        return _error_response(
            429, reply.message, code="rate_limit_exceeded", headers={"retry-after": "0"}
        )
    return _error_response(reply.status, reply.message)


def _error_response(
    status: int,
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    if status >= 500:
        kind = "server_error"
    else:
        kind = "requests" if status == 429 else "invalid_request_error"
    error = {"message": message, "type": kind, "param": param, "code": code}
    return web.json_response({"error": error}, status=status, headers=headers)
