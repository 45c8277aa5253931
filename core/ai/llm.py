"""Chat models: any OpenAI-compatible endpoint through the ``openai`` SDK, or the offline demo.

One interface (``ChatModel.complete``) for OpenAI, Azure OpenAI, vLLM, Ollama and the llama.cpp
server: the messages and tool specs go in, the text, the tool calls and the token usage come
out. With ``on_delta`` the answer is streamed and each text fragment is handed over as it
arrives; tool calls arrive as fragments too, joined here by their index. Every call has an
explicit timeout and the SDK's own retries are off: the AI stage decides what to retry.

The platform's key goes only to the platform's URL. A URL the operator did not choose (a
chatbot's own) is called only through the egress guard: checked before every call, connected
only to checked addresses, and never redirected (the SDK would otherwise follow redirects).
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
from openai import APIConnectionError, AsyncOpenAI, DefaultAioHttpClient
from openai._vendor.httpx_aiohttp import AiohttpTransport

from core import json_depth
from core.security.egress import (
    CheckedResolver,
    EgressPolicy,
    EgressRefused,
    check_literal_destination,
)
from core.settings import Settings

Message = dict[str, Any]
ToolSpec = dict[str, Any]
OnDelta = Callable[[str], Awaitable[None]]

#: How long one model call may take, unless the chatbot says otherwise.
DEFAULT_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class ModelSettings:
    """Where and how to call a model: the chatbot's ``llm`` config over the settings' defaults."""

    base_url: str
    api_key: str
    model: str
    temperature: float | None = None
    max_tokens: int | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    #: Set for a URL the operator did not choose: every call goes through this egress policy.
    egress: EgressPolicy | None = None

    @classmethod
    def resolve(cls, chatbot_llm: Mapping[str, Any], settings: Settings) -> ModelSettings | None:
        """The model to use, or None when neither the chatbot nor the settings name one.

        The platform's key is used only with the platform's URL; another URL without a key of
        its own gets a placeholder, never the platform's key.
        """
        base_url = chatbot_llm.get("base_url") or settings.llm_base_url
        model = chatbot_llm.get("model") or settings.llm_model
        if not base_url or not model:
            return None
        default_key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else ""
        if not is_platform_url(str(base_url), settings):
            default_key = ""
        return cls(
            base_url=str(base_url),
            # Local servers (Ollama, llama.cpp) take any key; the SDK insists on one.
            api_key=str(chatbot_llm.get("api_key") or default_key or "unused"),
            model=str(model),
            temperature=_optional_float(chatbot_llm.get("temperature")),
            max_tokens=_optional_int(chatbot_llm.get("max_tokens")),
            timeout_s=float(chatbot_llm.get("timeout_s") or DEFAULT_TIMEOUT_S),
        )


def normalised_url(url: str) -> str:
    """``url`` compared as an endpoint: scheme and host lower-cased, the default port and a
    trailing slash dropped. Anything unusual (a query, credentials) stays, so it differs."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        return url
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != {"http": 80, "https": 443}.get(scheme):
        host = f"{host}:{port}"
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@{host}" if userinfo else host
    query = f"?{parts.query}" if parts.query else ""
    fragment = f"#{parts.fragment}" if parts.fragment else ""
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}{query}{fragment}"


def is_platform_url(url: str, settings: Settings) -> bool:
    """Whether ``url`` is the platform's own model endpoint (``llm_base_url``)."""
    platform = settings.llm_base_url
    return bool(platform) and normalised_url(url) == normalised_url(str(platform))


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as the model wrote it

    def parsed_arguments(self) -> dict[str, Any]:
        """The arguments as an object; ValueError when the model wrote something else."""
        try:
            # The model's text: bounded, as any JSON from outside (core.json_depth).
            parsed = json_depth.loads(self.arguments or "{}")
        except ValueError as error:
            raise ValueError(f"arguments of {self.name} are not JSON: {error}") from error
        if not isinstance(parsed, dict):
            raise ValueError(f"arguments of {self.name} are not a JSON object")
        return parsed

    def as_message_part(self) -> dict[str, Any]:
        """How the call is written back into the conversation for the next round."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Completion:
    text: str
    tool_calls: tuple[ToolCall, ...]
    finish_reason: str
    usage: Usage
    model: str
    latency_s: float


class ChatModel(Protocol):
    """What the AI stage needs from a model."""

    @property
    def label(self) -> str:
        """Which model this is, for the turn's record."""
        ...

    @property
    def parameters(self) -> dict[str, Any]:
        """How it is called (endpoint, sampling), for the turn's record; never the key."""
        ...

    async def close(self) -> None: ...

    async def complete(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec],
        on_delta: OnDelta | None = None,
    ) -> Completion: ...


@dataclass
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class ToolCallAssembler:
    """Joins streamed tool-call fragments: the first names the call, the rest add arguments."""

    def __init__(self) -> None:
        self._calls: dict[int, _PartialCall] = {}

    def add(self, index: int, call_id: str | None, name: str | None, arguments: str | None) -> None:
        call = self._calls.setdefault(index, _PartialCall())
        if call_id:
            call.id = call_id
        if name:
            call.name += name
        if arguments:
            call.arguments.append(arguments)

    def calls(self) -> tuple[ToolCall, ...]:
        return tuple(
            ToolCall(id=c.id or f"call_{i}", name=c.name, arguments="".join(c.arguments))
            for i, c in sorted(self._calls.items())
        )


class OpenAIChatModel:
    """A model behind an OpenAI-compatible endpoint."""

    def __init__(self, settings: ModelSettings) -> None:
        self._settings = settings
        transport: dict[str, Any] = {}
        if settings.egress is not None:
            transport["transport"] = AiohttpTransport(client=_checked_session(settings.egress))
        self._client = AsyncOpenAI(
            base_url=settings.base_url,
            api_key=settings.api_key,
            timeout=settings.timeout_s,
            max_retries=0,
            # The SDK's aiohttp transport: its default (HTTPX on anyio) costs the event loop
            # several times more per call, and that loop also feeds every other stage. A model
            # API does not redirect; a redirect followed would carry the key elsewhere.
            http_client=DefaultAioHttpClient(
                timeout=settings.timeout_s, follow_redirects=False, **transport
            ),
        )

    @property
    def label(self) -> str:
        return self._settings.model

    @property
    def parameters(self) -> dict[str, Any]:
        return {
            "base_url": self._settings.base_url,
            "temperature": self._settings.temperature,
            "max_tokens": self._settings.max_tokens,
        }

    async def close(self) -> None:
        await self._client.close()

    def _parameters(self, messages: Sequence[Message], tools: Sequence[ToolSpec]) -> Message:
        parameters: Message = {"model": self._settings.model, "messages": list(messages)}
        if tools:
            parameters["tools"] = list(tools)
        if self._settings.temperature is not None:
            parameters["temperature"] = self._settings.temperature
        if self._settings.max_tokens is not None:
            parameters["max_tokens"] = self._settings.max_tokens
        return parameters

    async def complete(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec],
        on_delta: OnDelta | None = None,
    ) -> Completion:
        began = time.monotonic()
        parameters = self._parameters(messages, tools)
        if self._settings.egress is not None:
            # A literal address, which the connector's resolver never sees; a name is checked
            # by that resolver on every connection (its refusal is unwrapped below).
            check_literal_destination(self._settings.base_url, self._settings.egress)
        try:
            return await self._call(parameters, on_delta, began)
        except APIConnectionError as error:
            refused = _egress_refusal(error)
            if refused is not None:
                raise refused from error
            raise

    async def _call(
        self, parameters: Message, on_delta: OnDelta | None, began: float
    ) -> Completion:
        if on_delta is None:
            response = await self._client.chat.completions.create(**parameters)
            choice = response.choices[0]
            calls = tuple(
                ToolCall(id=c.id, name=c.function.name, arguments=c.function.arguments)
                for c in choice.message.tool_calls or []
                if c.type == "function"
            )
            usage = response.usage
            return Completion(
                text=choice.message.content or "",
                tool_calls=calls,
                finish_reason=choice.finish_reason or "stop",
                usage=Usage(usage.prompt_tokens, usage.completion_tokens) if usage else Usage(),
                model=response.model,
                latency_s=time.monotonic() - began,
            )
        return await self._stream(parameters, on_delta, began)

    async def _stream(self, parameters: Message, on_delta: OnDelta, began: float) -> Completion:
        stream = await self._client.chat.completions.create(
            **parameters, stream=True, stream_options={"include_usage": True}
        )
        text: list[str] = []
        calls = ToolCallAssembler()
        finish_reason, usage, model = "stop", Usage(), self._settings.model
        async with stream:
            async for chunk in stream:
                model = chunk.model or model
                if chunk.usage is not None:
                    usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
                for choice in chunk.choices:
                    delta = choice.delta
                    if delta.content:
                        text.append(delta.content)
                        await on_delta(delta.content)
                    for part in delta.tool_calls or []:
                        function = part.function
                        calls.add(
                            part.index,
                            part.id,
                            function.name if function else None,
                            function.arguments if function else None,
                        )
                    if choice.finish_reason:
                        finish_reason = choice.finish_reason
        return Completion(
            text="".join(text),
            tool_calls=calls.calls(),
            finish_reason=finish_reason,
            usage=usage,
            model=model,
            latency_s=time.monotonic() - began,
        )


def _checked_session(policy: EgressPolicy) -> Callable[[], aiohttp.ClientSession]:
    """A session whose connections go only to addresses ``policy`` allows; made on first use,
    on the loop the model's calls run on."""

    def make() -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            resolver=CheckedResolver(policy), use_dns_cache=False, limit=1000
        )
        return aiohttp.ClientSession(connector=connector)

    return make


def _egress_refusal(error: BaseException) -> EgressRefused | None:
    """The egress refusal behind a lost connection (the connector's resolver refused)."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, EgressRefused):
            return cause
        cause = cause.__cause__ or cause.__context__
    return None


DEMO_LABEL = "switchboard-demo"
DEMO_PREFIX = "[demo model] "
_TOOL_REQUEST = re.compile(r"^\s*(?:please\s+)?(?:call|use)\s+([a-zA-Z0-9_-]{1,64})\b(.*)$", re.I)


class DemoChatModel:
    """The offline stand-in used when no model is configured: deterministic and labelled.

    It answers every message with a short, clearly marked reply, and it calls a tool when asked
    to ("call get_conversation_info", or "call lookup_order {"id": 7}"), so the whole tool loop
    can be tried without an API key. After a tool result it reports what the tool returned.
    """

    @property
    def label(self) -> str:
        return DEMO_LABEL

    @property
    def parameters(self) -> dict[str, Any]:
        return {}

    async def close(self) -> None:
        return None

    async def complete(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec],
        on_delta: OnDelta | None = None,
    ) -> Completion:
        began = time.monotonic()
        last = messages[-1] if messages else {"role": "user", "content": ""}
        calls: tuple[ToolCall, ...] = ()
        if last.get("role") == "tool":
            text = f"{DEMO_PREFIX}The tool answered: {str(last.get('content', ''))[:500]}"
        else:
            asked = _TOOL_REQUEST.match(str(last.get("content") or ""))
            known = {t.get("function", {}).get("name") for t in tools}
            if asked and asked.group(1) in known:
                arguments = asked.group(2).strip() or "{}"
                calls = (
                    ToolCall(id=f"demo_{len(messages)}", name=asked.group(1), arguments=arguments),
                )
                text = ""
            else:
                text = (
                    f"{DEMO_PREFIX}You said: {str(last.get('content') or '')[:500]}. "
                    "Configure a model to get real answers."
                )
        if text and on_delta is not None:
            for piece in re.findall(r"\S+\s*", text):
                await on_delta(piece)
        prompt_words = sum(len(str(m.get("content") or "").split()) for m in messages)
        return Completion(
            text=text,
            tool_calls=calls,
            finish_reason="tool_calls" if calls else "stop",
            usage=Usage(prompt_words, len(text.split())),
            model=DEMO_LABEL,
            latency_s=time.monotonic() - began,
        )


def _optional_float(value: object) -> float | None:
    return None if value is None else float(str(value))


def _optional_int(value: object) -> int | None:
    return None if value is None else int(str(value))
