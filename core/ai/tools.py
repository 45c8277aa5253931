"""The tools a chatbot may offer its model: three built-ins and the tenant's own HTTP tools.

A chatbot lists the names it enables (``chatbot.tools``); without a list it offers the
built-ins, which act only on the conversation being answered. The model sees a tool's name,
description and JSON schema, never its URL, headers or secrets. Tenant tools live in the
``tools`` collection, one document per tool, and are read through a Redis cache per workspace
that the chatbots service invalidates on every change.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from core.ai.llm import ToolSpec
from core.ai.tool_schema import ToolSchemas
from core.clients.database import Document
from core.errors import ValidationFailed
from core.security.egress import EgressPolicy, check_destination, header_refusal

HANDOFF = "handoff_to_human"
CLOSE = "close_conversation"
CONVERSATION_INFO = "get_conversation_info"

#: Built-ins that change the conversation: applied after the turn's answer is delivered, so the
#: bot can say goodbye before an operator (or nobody) takes over.
CONVERSATION_ACTIONS = {HANDOFF: "handoff", CLOSE: "close"}

CACHE_TTL_S = 300
NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
#: Sent with every call, with the call's id (``core.ai.http_tools``).
IDEMPOTENCY_KEY = "Idempotency-Key"


def _function(name: str, description: str, properties: dict[str, Any]) -> ToolSpec:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": properties, "required": []},
        },
    }


BUILTINS: dict[str, ToolSpec] = {
    HANDOFF: _function(
        HANDOFF,
        "Hand the conversation to a human operator when the user asks for a person or you "
        "cannot help. Tell the user in your reply that a person will take over.",
        {"reason": {"type": "string", "description": "why a human is needed, for the operator"}},
    ),
    CLOSE: _function(
        CLOSE,
        "Close the conversation when the user's request is fully resolved and they say goodbye.",
        {"summary": {"type": "string", "description": "a one-line summary of the outcome"}},
    ),
    CONVERSATION_INFO: _function(
        CONVERSATION_INFO,
        "Facts about this conversation: its channel, its mode and when it started.",
        {},
    ),
}


def check_headers(headers: Mapping[str, str], secret_headers: Mapping[str, str]) -> None:
    """Refuse headers a tenant may not set (``core.security.egress.header_refusal``), the
    ``Idempotency-Key`` the call sets itself, and a name given twice, naming the field."""
    seen: set[str] = set()
    for where, given in (("headers", headers), ("secret_headers", secret_headers)):
        for name, value in given.items():
            reason = header_refusal(name, value)
            if reason is None and name.lower() == IDEMPOTENCY_KEY.lower():
                reason = f"the header {IDEMPOTENCY_KEY} is set by every call itself"
            if reason is None and name.lower() in seen:
                reason = f"the header {name} is given twice"
            if reason is not None:
                raise ValidationFailed(
                    reason, details=[{"field": f"{where}.{name}", "message": reason}]
                )
            seen.add(name.lower())


@dataclass(frozen=True)
class TenantTool:
    """A tenant's HTTP tool: called by the function-call stage through the egress guard."""

    name: str
    description: str
    url: str
    method: str = "POST"
    parameters: Mapping[str, Any] = field(default_factory=lambda: {"type": "object"})
    headers: Mapping[str, str] = field(default_factory=dict)
    #: Header values sealed with ``core.security.secrets.SecretBox``: opened only to make the call.
    secret_headers: Mapping[str, str] = field(default_factory=dict)
    enabled: bool = True

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> TenantTool:
        method = str(document.get("method") or "POST").upper()
        if method not in METHODS:
            raise ValidationFailed(f"tool method {method!r} is not one of {', '.join(METHODS)}")
        return cls(
            name=str(document["name"]),
            description=str(document.get("description") or ""),
            url=str(document["url"]),
            method=method,
            parameters=dict(document.get("parameters") or {"type": "object"}),
            headers={str(k): str(v) for k, v in (document.get("headers") or {}).items()},
            secret_headers={
                str(k): str(v) for k, v in (document.get("secret_headers") or {}).items()
            },
            enabled=bool(document.get("enabled", True)),
        )

    def spec(self) -> ToolSpec:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": dict(self.parameters),
            },
        }


def enabled_names(chatbot: Mapping[str, Any]) -> list[str]:
    """The tools the chatbot offers: its list, or the built-ins when it has none."""
    names = chatbot.get("tools")
    if names is None:
        return list(BUILTINS)
    return [str(name) for name in names if isinstance(name, str) and NAME.match(name)]


def cache_key(workspace_id: str) -> str:
    return f"config:tools:{workspace_id}"


class ToolDirectory:
    """A workspace's tenant tools, read through Redis."""

    def __init__(self, db: AsyncDatabase[Document], redis: Redis) -> None:
        self._tools = db["tools"]
        self._redis = redis

    async def tenant_tools(self, workspace_id: str) -> dict[str, TenantTool]:
        cached = await self._redis.get(cache_key(workspace_id))
        if cached is not None:
            documents: list[Document] = json.loads(cached)
        else:
            documents = [
                {key: value for key, value in document.items() if key != "_id"}
                async for document in self._tools.find({"workspace_id": workspace_id})
            ]
            await self._redis.set(cache_key(workspace_id), json.dumps(documents), ex=CACHE_TTL_S)
        tools: dict[str, TenantTool] = {}
        for document in documents:
            try:
                tool = TenantTool.from_document(document)
            except (KeyError, ValidationFailed):
                continue  # a broken document offers nothing, rather than failing every turn
            tools[tool.name] = tool
        return tools

    async def invalidate(self, workspace_id: str) -> None:
        await self._redis.delete(cache_key(workspace_id))

    async def offered(
        self, chatbot: Mapping[str, Any], workspace_id: str
    ) -> tuple[list[ToolSpec], dict[str, TenantTool]]:
        """The specs to show the model, and the tenant tools among them, by name."""
        names = enabled_names(chatbot)
        tenant = {}
        if any(name not in BUILTINS for name in names):
            tenant = {
                name: tool
                for name, tool in (await self.tenant_tools(workspace_id)).items()
                if tool.enabled and name in names
            }
        specs = [BUILTINS[n] if n in BUILTINS else tenant[n].spec() for n in _known(names, tenant)]
        return specs, tenant


async def check_tool(
    document: Mapping[str, Any], policy: EgressPolicy, schemas: ToolSchemas
) -> TenantTool:
    """A tenant tool as it may be saved: a name the model accepts, a known method, a JSON schema
    of an object within the limits and with patterns RE2 runs, headers a tenant may set, and a
    URL the egress policy would call. Raises ValidationFailed or EgressRefused (403) with the
    reason."""
    name = document.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise ValidationFailed("a tool's name is 1-64 letters, digits, '_' or '-'")
    if name in BUILTINS:
        raise ValidationFailed(f"{name!r} is the name of a built-in tool")
    if not isinstance(document.get("url"), str):
        raise ValidationFailed("a tool needs a url")
    parameters = document.get("parameters") or {"type": "object"}
    schemas.check(parameters)
    _check_storable(parameters)
    tool = TenantTool.from_document(document)
    check_headers(tool.headers, tool.secret_headers)
    await check_destination(tool.url, policy)
    return tool


def _check_storable(parameters: object) -> None:
    """Refuse a schema key the database cannot store (MongoDB and FerretDB field names neither
    start with '$' nor hold '.'), naming the place, instead of failing the write."""
    stack: list[tuple[object, tuple[str, ...]]] = [(parameters, ("parameters",))]
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key.startswith("$") or "." in key:
                    reason = f"a schema key may not start with '$' or hold '.': {key!r}"
                    field = ".".join((*path, key))
                    raise ValidationFailed(reason, details=[{"field": field, "message": reason}])
                stack.append((value, (*path, key)))
        elif isinstance(node, list):
            stack.extend((value, (*path, str(n))) for n, value in enumerate(node))


def _known(names: Sequence[str], tenant: Mapping[str, TenantTool]) -> list[str]:
    return [n for n in dict.fromkeys(names) if n in BUILTINS or n in tenant]
