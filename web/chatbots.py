"""The chatbots service: model endpoints and settings; the tenant's HTTP tools are web/tools.py.

A chatbot's model API key is sealed with the settings' encryption key before it is stored and
is never returned: a chatbot shows ``llm.has_api_key``. Every change invalidates the configs the
pipeline caches of the applications using the chatbot. A chatbot's model is checked when saved
as the AI stage checks it when called (``core.ai.model_policy``): its own base_url needs its
own api_key (422 ``model_refused``) and must pass the egress guard (403
``model_endpoint_refused``); on the platform's model, only the models and max_tokens the
operator offers (422 ``model_refused``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from pydantic import Field, field_validator

from core.ai.model_policy import ModelPolicy
from core.ai.tools import BUILTINS
from core.cached.applications import ApplicationDirectory
from core.clients.database import Document
from core.errors import ValidationFailed
from core.security.secrets import SecretBox
from core.security.tokens import TokenService
from core.settings import Settings
from core.stores.chatbot_store import ChatbotStore, ToolStore
from web import tools
from web.auth import TOKENS, principal
from web.health import Dependency
from web.keys import REDIS, SETTINGS
from web.openapi import Operation
from web.service import request_db, secret_box, service_app
from web.validation import StrictBody, not_null, parse_body

log = logging.getLogger(__name__)

DEPENDENCIES = (Dependency.MONGODB, Dependency.REDIS)


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


def _chatbot_view(document: Document) -> Document:
    llm = dict(document.get("llm") or {})
    has_key = bool(llm.pop("api_key", None))
    view = {key: value for key, value in document.items() if key not in ("_id", "llm")}
    return {"id": document["_id"], **view, "llm": {**llm, "has_api_key": has_key}}


async def _check_tool_names(request: web.Request, workspace_id: str, names: list[str]) -> None:
    """Every enabled tool must be a built-in or one of the workspace's tools."""
    known = set(BUILTINS) | await ToolStore(request_db(request)).names(workspace_id)
    details = [
        {"field": f"tools.{index}", "message": f"no tool named {name!r}"}
        for index, name in enumerate(names)
        if name not in known
    ]
    if details:
        raise ValidationFailed("the chatbot names tools that do not exist", details=details)


async def _check_llm(request: web.Request, workspace_id: str, llm: Mapping[str, Any]) -> None:
    """Refuse a model config the AI stage would refuse to call (the whole config, as stored)."""
    policy = ModelPolicy(request.app[SETTINGS])
    policy.check(llm, workspace_id)
    await policy.check_endpoint(llm)


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
    directory = ApplicationDirectory(request_db(request), request.app[REDIS], local_ttl_s=0)
    for application_id in ids:
        await directory.invalidate(application_id)


async def list_chatbots(request: web.Request) -> web.Response:
    caller = await principal(request)
    found = await ChatbotStore(request_db(request)).of_workspace(caller.workspace_id)
    return web.json_response({"chatbots": [_chatbot_view(d) for d in found]})


async def create_chatbot(request: web.Request) -> web.Response:
    caller = await principal(request)
    caller.require_configurer()
    body = await parse_body(request, ChatbotCreate)
    if body.tools is not None:
        await _check_tool_names(request, caller.workspace_id, body.tools)
    await _check_llm(request, caller.workspace_id, body.llm.model_dump(exclude_none=True))
    fields = new_chatbot_fields(body, secret_box(request))
    created = await ChatbotStore(request_db(request)).create(caller.workspace_id, fields)
    return web.json_response(_chatbot_view(created), status=201)


async def get_chatbot(request: web.Request) -> web.Response:
    caller = await principal(request)
    found = await ChatbotStore(request_db(request)).get(
        caller.workspace_id, request.match_info["id"]
    )
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
        sealed = _sealed_llm(secret_box(request), {k: v for k, v in llm.items() if v is not None})
        to_set.update({f"llm.{key}": value for key, value in sealed.items()})
        to_unset += [f"llm.{key}" for key, value in llm.items() if value is None]
    store = ChatbotStore(request_db(request))
    chatbot_id = request.match_info["id"]
    if body.llm is not None:
        stored = await store.get(caller.workspace_id, chatbot_id)
        merged = {**(stored.get("llm") or {}), **body.llm.model_dump(exclude_unset=True)}
        await _check_llm(
            request, caller.workspace_id, {k: v for k, v in merged.items() if v is not None}
        )
    updated = await store.update(caller.workspace_id, chatbot_id, to_set, to_unset)
    linked = await store.applications_of(caller.workspace_id, chatbot_id)
    await _invalidate_applications(request, linked)
    return web.json_response(_chatbot_view(updated))


async def delete_chatbot(request: web.Request) -> web.Response:
    caller = await principal(request)
    caller.require_configurer()
    store = ChatbotStore(request_db(request))
    linked = await store.delete(caller.workspace_id, request.match_info["id"])
    await _invalidate_applications(request, linked)
    return web.Response(status=204)


def _operations() -> list[Operation]:
    bots = "chatbots"
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
    ]  # fmt: skip


OPERATIONS = _operations() + tools.OPERATIONS


def create_app(settings: Settings) -> web.Application:
    app = service_app(settings, "chatbots", DEPENDENCIES)
    app[TOKENS] = TokenService(settings)
    tools.add_routes(app)  # first: "tools" would otherwise match as a chatbot id
    app.router.add_get("/api/chatbots", list_chatbots)
    app.router.add_post("/api/chatbots", create_chatbot)
    app.router.add_get("/api/chatbots/{id}", get_chatbot)
    app.router.add_patch("/api/chatbots/{id}", update_chatbot)
    app.router.add_delete("/api/chatbots/{id}", delete_chatbot)
    return app
