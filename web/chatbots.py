"""The chatbots service: model endpoints and settings, and the tenant's HTTP tools.

A chatbot's model API key and a tool's secret header values are sealed with the settings'
encryption key before they are stored and are never returned: a chatbot shows
``llm.has_api_key``, a tool the names of its secret headers. A tool is checked when it is saved
as the function-call stage checks it when called (``core.ai.tools.check_tool``: its name, method,
JSON schema, and every address its URL reaches). Every change invalidates what the pipeline
caches: the configs of the applications using a chatbot, and the workspace's tools.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

from aiohttp import web
from pydantic import Field, field_validator
from pymongo.asynchronous.database import AsyncDatabase

from core.ai.tools import BUILTINS, NAME, ToolDirectory, check_tool
from core.cached.applications import ApplicationDirectory
from core.clients.database import Document, database
from core.errors import ValidationFailed
from core.security.egress import EgressPolicy, EgressRefused
from core.security.secrets import SecretBox
from core.security.tokens import TokenService
from core.settings import Settings
from core.stores.chatbot_store import ChatbotStore, ToolStore
from web.auth import TOKENS, principal
from web.health import Dependency
from web.keys import MONGO, REDIS, SETTINGS
from web.openapi import Operation
from web.service import service_app
from web.validation import StrictBody, not_null, parse_body

log = logging.getLogger(__name__)

DEPENDENCIES = (Dependency.MONGODB, Dependency.REDIS)
#: An HTTP header name, less '.' and '$' (they cannot be MongoDB field names).
HEADER_NAME = re.compile(r"^[!#%&'*+^_`|~0-9A-Za-z-]{1,100}$")


class ToolRefused(ValidationFailed):
    """The tool's URL points where the egress policy would never call."""

    code = "tool_refused"


class LLMConfig(StrictBody):
    """A chatbot's model; in a PATCH, only the fields sent change and ``null`` clears one."""

    base_url: str | None = Field(default=None, min_length=1, max_length=2_000)
    model: str | None = Field(default=None, min_length=1, max_length=200)
    api_key: str | None = Field(default=None, min_length=1, max_length=4_000)
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    timeout_s: float | None = Field(default=None, gt=0, le=300)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("must be an http or https URL with a host")
        return value


class ChatbotCreate(StrictBody):
    name: str = Field(min_length=1, max_length=200)
    instructions: str = Field(default="", max_length=20_000)
    fallback_reply: str = Field(default="", max_length=2_000)
    limit_reply: str = Field(default="", max_length=2_000)
    #: The tools offered (built-ins and the workspace's tools, by name); none sent: the built-ins.
    tools: list[str] | None = Field(default=None, max_length=64)
    max_tool_rounds: int | None = Field(default=None, ge=0, le=20)
    token_budget: int | None = Field(default=None, ge=1, le=1_000_000)
    llm: LLMConfig = Field(default_factory=LLMConfig)


class ChatbotPatch(StrictBody):
    """Only the fields sent change; ``null`` clears tools, max_tool_rounds and token_budget."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    instructions: str | None = Field(default=None, max_length=20_000)
    fallback_reply: str | None = Field(default=None, max_length=2_000)
    limit_reply: str | None = Field(default=None, max_length=2_000)
    tools: list[str] | None = Field(default=None, max_length=64)
    max_tool_rounds: int | None = Field(default=None, ge=0, le=20)
    token_budget: int | None = Field(default=None, ge=1, le=1_000_000)
    llm: LLMConfig | None = None

    _present = field_validator("name", "instructions", "fallback_reply", "limit_reply", "llm")(
        not_null
    )


Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]


class ToolCreate(StrictBody):
    name: str = Field(min_length=1, max_length=64, pattern=NAME.pattern)
    description: str = Field(default="", max_length=2_000)
    url: str = Field(min_length=1, max_length=2_000)
    method: Method = "POST"
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})
    headers: dict[str, str] = Field(default_factory=dict, max_length=32)
    secret_headers: dict[str, str] = Field(default_factory=dict, max_length=32)
    enabled: bool = True

    @field_validator("headers", "secret_headers")
    @classmethod
    def _valid_headers(cls, value: dict[str, str | None]) -> dict[str, str | None]:
        return _check_headers(value)


class ToolPatch(StrictBody):
    """Only the fields sent change; a secret header sent as ``null`` is removed."""

    name: str | None = Field(default=None, min_length=1, max_length=64, pattern=NAME.pattern)
    description: str | None = Field(default=None, max_length=2_000)
    url: str | None = Field(default=None, min_length=1, max_length=2_000)
    method: Method | None = None
    parameters: dict[str, Any] | None = None
    headers: dict[str, str] | None = Field(default=None, max_length=32)
    secret_headers: dict[str, str | None] | None = Field(default=None, max_length=32)
    enabled: bool | None = None

    _present = field_validator(
        "name", "description", "url", "method", "parameters", "headers", "secret_headers", "enabled"
    )(not_null)

    @field_validator("headers", "secret_headers")
    @classmethod
    def _valid_headers(cls, value: dict[str, str | None] | None) -> dict[str, str | None] | None:
        return None if value is None else _check_headers(value)


def _check_headers(headers: dict[str, str | None]) -> dict[str, str | None]:
    for name, value in headers.items():
        if not HEADER_NAME.match(name):
            raise ValueError(f"{name!r} is not a header name")
        if value is not None and ("\r" in value or "\n" in value or len(value) > 8_000):
            raise ValueError(f"the value of {name} is not a header value")
    return headers


def _box(request: web.Request) -> SecretBox:
    return SecretBox(request.app[SETTINGS].encryption_key.get_secret_value())


def _db(request: web.Request) -> AsyncDatabase[Document]:
    return database(request.app[MONGO], request.app[SETTINGS])


def _chatbot_view(document: Document) -> Document:
    llm = dict(document.get("llm") or {})
    has_key = bool(llm.pop("api_key", None))
    view = {key: value for key, value in document.items() if key not in ("_id", "llm")}
    return {"id": document["_id"], **view, "llm": {**llm, "has_api_key": has_key}}


def _tool_view(document: Document) -> Document:
    view = {key: value for key, value in document.items() if key != "_id"}
    view["secret_headers"] = sorted(document.get("secret_headers") or {})
    return {"id": document["_id"], **view}


async def _check_tool_names(request: web.Request, workspace_id: str, names: list[str]) -> None:
    """Every enabled tool must be a built-in or one of the workspace's tools."""
    known = set(BUILTINS) | await ToolStore(_db(request)).names(workspace_id)
    details = [
        {"field": f"tools.{index}", "message": f"no tool named {name!r}"}
        for index, name in enumerate(names)
        if name not in known
    ]
    if details:
        raise ValidationFailed("the chatbot names tools that do not exist", details=details)


def _sealed_llm(box: SecretBox, llm: Mapping[str, Any]) -> dict[str, Any]:
    """The llm fields to store, the API key sealed."""
    stored = dict(llm)
    if stored.get("api_key") is not None:
        stored["api_key"] = box.seal(stored["api_key"])
    return stored


def new_chatbot_fields(body: ChatbotCreate, box: SecretBox) -> dict[str, Any]:
    """A new chatbot's fields as stored (``ChatbotStore.create``), its model API key sealed."""
    fields = {k: v for k, v in body.model_dump(exclude={"llm"}).items() if v is not None}
    fields["llm"] = _sealed_llm(box, body.llm.model_dump(exclude_none=True))
    return fields


async def _invalidate_applications(request: web.Request, ids: list[str]) -> None:
    directory = ApplicationDirectory(_db(request), request.app[REDIS], local_ttl_s=0)
    for application_id in ids:
        await directory.invalidate(application_id)


async def list_chatbots(request: web.Request) -> web.Response:
    caller = await principal(request)
    found = await ChatbotStore(_db(request)).of_workspace(caller.workspace_id)
    return web.json_response({"chatbots": [_chatbot_view(d) for d in found]})


async def create_chatbot(request: web.Request) -> web.Response:
    caller = await principal(request)
    caller.require_configurer()
    body = await parse_body(request, ChatbotCreate)
    if body.tools is not None:
        await _check_tool_names(request, caller.workspace_id, body.tools)
    fields = new_chatbot_fields(body, _box(request))
    created = await ChatbotStore(_db(request)).create(caller.workspace_id, fields)
    return web.json_response(_chatbot_view(created), status=201)


async def get_chatbot(request: web.Request) -> web.Response:
    caller = await principal(request)
    found = await ChatbotStore(_db(request)).get(caller.workspace_id, request.match_info["id"])
    return web.json_response(_chatbot_view(found))


async def update_chatbot(request: web.Request) -> web.Response:
    caller = await principal(request)
    caller.require_configurer()
    body = await parse_body(request, ChatbotPatch)
    if body.tools is not None:
        await _check_tool_names(request, caller.workspace_id, body.tools)
    sent = body.model_dump(exclude_unset=True, exclude={"llm"})
    to_set = {key: value for key, value in sent.items() if value is not None}
    to_unset = [key for key, value in sent.items() if value is None]
    if body.llm is not None:
        llm = body.llm.model_dump(exclude_unset=True)
        sealed = _sealed_llm(_box(request), {k: v for k, v in llm.items() if v is not None})
        to_set.update({f"llm.{key}": value for key, value in sealed.items()})
        to_unset += [f"llm.{key}" for key, value in llm.items() if value is None]
    store = ChatbotStore(_db(request))
    chatbot_id = request.match_info["id"]
    updated = await store.update(caller.workspace_id, chatbot_id, to_set, to_unset)
    linked = await store.applications_of(caller.workspace_id, chatbot_id)
    await _invalidate_applications(request, linked)
    return web.json_response(_chatbot_view(updated))


async def delete_chatbot(request: web.Request) -> web.Response:
    caller = await principal(request)
    caller.require_configurer()
    store = ChatbotStore(_db(request))
    linked = await store.delete(caller.workspace_id, request.match_info["id"])
    await _invalidate_applications(request, linked)
    return web.Response(status=204)


async def _checked(request: web.Request, document: Mapping[str, Any]) -> None:
    """Refuse a tool as the function-call stage would refuse to call it."""
    policy = EgressPolicy.from_setting(request.app[SETTINGS].tool_allow_networks)
    try:
        await check_tool(document, policy)
    except EgressRefused as refused:
        raise ToolRefused(
            f"the tool's URL may not be called: {refused.message}",
            details=[{"field": "url", "message": refused.message}],
        ) from refused


async def _tools_changed(request: web.Request, workspace_id: str) -> None:
    await ToolDirectory(_db(request), request.app[REDIS]).invalidate(workspace_id)


async def list_tools(request: web.Request) -> web.Response:
    caller = await principal(request)
    found = await ToolStore(_db(request)).of_workspace(caller.workspace_id)
    return web.json_response({"tools": [_tool_view(d) for d in found]})


async def create_tool(request: web.Request) -> web.Response:
    caller = await principal(request)
    caller.require_configurer()
    body = await parse_body(request, ToolCreate)
    fields = body.model_dump()
    await _checked(request, fields)
    box = _box(request)
    fields["secret_headers"] = {k: box.seal(v) for k, v in body.secret_headers.items()}
    created = await ToolStore(_db(request)).create(caller.workspace_id, fields)
    await _tools_changed(request, caller.workspace_id)
    return web.json_response(_tool_view(created), status=201)


async def get_tool(request: web.Request) -> web.Response:
    caller = await principal(request)
    found = await ToolStore(_db(request)).get(caller.workspace_id, request.match_info["id"])
    return web.json_response(_tool_view(found))


async def update_tool(request: web.Request) -> web.Response:
    caller = await principal(request)
    caller.require_configurer()
    body = await parse_body(request, ToolPatch)
    store = ToolStore(_db(request))
    tool_id = request.match_info["id"]
    current = await store.get(caller.workspace_id, tool_id)
    sent = body.model_dump(exclude_unset=True, exclude={"secret_headers"})
    await _checked(request, {**current, **sent})
    to_set: dict[str, Any] = dict(sent)
    to_unset: list[str] = []
    box = _box(request)
    for name, value in (body.secret_headers or {}).items():
        if value is None:
            to_unset.append(f"secret_headers.{name}")
        else:
            to_set[f"secret_headers.{name}"] = box.seal(value)
    updated = await store.update(caller.workspace_id, tool_id, to_set, to_unset)
    await _tools_changed(request, caller.workspace_id)
    return web.json_response(_tool_view(updated))


async def delete_tool(request: web.Request) -> web.Response:
    caller = await principal(request)
    caller.require_configurer()
    await ToolStore(_db(request)).delete(caller.workspace_id, request.match_info["id"])
    await _tools_changed(request, caller.workspace_id)
    return web.Response(status=204)


async def _indexes_ctx(app: web.Application) -> AsyncIterator[None]:
    try:
        await ToolStore(database(app[MONGO], app[SETTINGS])).ensure_indexes()
    except Exception as error:  # the service starts while MongoDB is down; /readyz says so
        log.warning("could not ensure the tools indexes: %s", error)
    yield


def _operations() -> list[Operation]:
    bots, tools = "chatbots", "tools"
    writes = (400, 401, 403, 404, 409, 422)
    return [
        Operation("GET", "/api/chatbots", "List chatbots", bots, errors=(401,)),
        Operation("POST", "/api/chatbots", "Create a chatbot", bots, status=201,
                  body=ChatbotCreate, errors=writes),
        Operation("GET", "/api/chatbots/{id}", "A chatbot (its model key never shown)", bots,
                  errors=(401, 404)),
        Operation("PATCH", "/api/chatbots/{id}", "Change a chatbot", bots, body=ChatbotPatch,
                  errors=writes),
        Operation("DELETE", "/api/chatbots/{id}", "Delete a chatbot", bots, status=204,
                  errors=(401, 403, 404)),
        Operation("GET", "/api/chatbots/tools", "List tenant HTTP tools", tools, errors=(401,)),
        Operation("POST", "/api/chatbots/tools", "Create a tool (checked like a call)", tools,
                  status=201, body=ToolCreate, errors=writes),
        Operation("GET", "/api/chatbots/tools/{id}", "A tool (secret values never shown)", tools,
                  errors=(401, 404)),
        Operation("PATCH", "/api/chatbots/tools/{id}", "Change a tool", tools, body=ToolPatch,
                  errors=writes),
        Operation("DELETE", "/api/chatbots/tools/{id}", "Delete a tool", tools, status=204,
                  errors=(401, 403, 404)),
    ]  # fmt: skip


OPERATIONS = _operations()


def create_app(settings: Settings) -> web.Application:
    app = service_app(settings, "chatbots", DEPENDENCIES)
    app[TOKENS] = TokenService(settings)
    app.cleanup_ctx.append(_indexes_ctx)
    # The tools' routes first: "tools" would otherwise match as a chatbot id.
    app.router.add_get("/api/chatbots/tools", list_tools)
    app.router.add_post("/api/chatbots/tools", create_tool)
    app.router.add_get("/api/chatbots/tools/{id}", get_tool)
    app.router.add_patch("/api/chatbots/tools/{id}", update_tool)
    app.router.add_delete("/api/chatbots/tools/{id}", delete_tool)
    app.router.add_get("/api/chatbots", list_chatbots)
    app.router.add_post("/api/chatbots", create_chatbot)
    app.router.add_get("/api/chatbots/{id}", get_chatbot)
    app.router.add_patch("/api/chatbots/{id}", update_chatbot)
    app.router.add_delete("/api/chatbots/{id}", delete_chatbot)
    return app
