"""The tenant's HTTP tools, served by the chatbots service under ``/api/chatbots/tools``.

A tool's secret header values are sealed with the settings' encryption key before they are
stored and are never returned: a tool shows the names of its secret headers. A tool is checked
when it is saved as the function-call stage checks it when called (``core.ai.tools.check_tool``:
its name, method, JSON schema within the size caps and with patterns RE2 can run, headers a
tenant may set, and every address its URL reaches). Every change invalidates the workspace's
tools that the pipeline caches.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal

from aiohttp import web
from pydantic import Field, field_validator

from core.ai.tool_schema import SchemaLimits, tool_schemas
from core.ai.tools import IDEMPOTENCY_KEY, NAME, ToolDirectory, check_tool
from core.clients.database import Document, database
from core.errors import ValidationFailed
from core.security.egress import EgressPolicy, EgressRefused, header_refusal
from core.stores.chatbot_store import ToolStore
from web.auth import principal
from web.keys import MONGO, REDIS, SETTINGS
from web.openapi import Operation
from web.service import request_db, secret_box
from web.validation import StrictBody, not_null, parse_body

log = logging.getLogger(__name__)

#: An HTTP header name, less '.' and '$' (they cannot be MongoDB field names).
HEADER_NAME = re.compile(r"^[!#%&'*+^_`|~0-9A-Za-z-]{1,100}$")


class ToolRefused(ValidationFailed):
    """The tool's URL points where the egress policy would never call."""

    code = "tool_refused"


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
    """Names and values a tenant may send: no framing, hop-by-hop or identity header, no CR or
    LF (``core.security.egress.header_refusal``), and not the call's own Idempotency-Key."""
    for name, value in headers.items():
        if not HEADER_NAME.match(name):
            raise ValueError(f"{name!r} is not a header name")
        if value is not None and len(value) > 8_000:
            raise ValueError(f"the value of {name} is not a header value")
        reason = header_refusal(name, value or "")
        if reason is None and name.lower() == IDEMPOTENCY_KEY.lower():
            reason = f"{IDEMPOTENCY_KEY} is set by every call itself"
        if reason is not None:
            raise ValueError(reason)
    return headers


def _tool_view(document: Document) -> Document:
    view = {key: value for key, value in document.items() if key != "_id"}
    view["secret_headers"] = sorted(document.get("secret_headers") or {})
    return {"id": document["_id"], **view}


async def _checked(request: web.Request, document: Mapping[str, Any]) -> None:
    """Refuse a tool as the function-call stage would refuse to call it."""
    settings = request.app[SETTINGS]
    policy = EgressPolicy.from_setting(settings.tool_allow_networks)
    try:
        await check_tool(document, policy, tool_schemas(SchemaLimits.from_settings(settings)))
    except EgressRefused as refused:
        raise ToolRefused(
            f"the tool's URL may not be called: {refused.message}",
            details=[{"field": "url", "message": refused.message}],
        ) from refused


async def _tools_changed(request: web.Request, workspace_id: str) -> None:
    await ToolDirectory(request_db(request), request.app[REDIS]).invalidate(workspace_id)


async def list_tools(request: web.Request) -> web.Response:
    caller = await principal(request)
    found = await ToolStore(request_db(request)).of_workspace(caller.workspace_id)
    return web.json_response({"tools": [_tool_view(d) for d in found]})


async def create_tool(request: web.Request) -> web.Response:
    caller = await principal(request)
    caller.require_configurer()
    body = await parse_body(request, ToolCreate)
    fields = body.model_dump()
    await _checked(request, fields)
    box = secret_box(request)
    fields["secret_headers"] = {k: box.seal(v) for k, v in body.secret_headers.items()}
    created = await ToolStore(request_db(request)).create(caller.workspace_id, fields)
    await _tools_changed(request, caller.workspace_id)
    return web.json_response(_tool_view(created), status=201)


async def get_tool(request: web.Request) -> web.Response:
    caller = await principal(request)
    found = await ToolStore(request_db(request)).get(caller.workspace_id, request.match_info["id"])
    return web.json_response(_tool_view(found))


async def update_tool(request: web.Request) -> web.Response:
    caller = await principal(request)
    caller.require_configurer()
    body = await parse_body(request, ToolPatch)
    store = ToolStore(request_db(request))
    tool_id = request.match_info["id"]
    current = await store.get(caller.workspace_id, tool_id)
    sent = body.model_dump(exclude_unset=True, exclude={"secret_headers"})
    secrets = {**(current.get("secret_headers") or {}), **(body.secret_headers or {})}
    kept = {name: value for name, value in secrets.items() if value is not None}
    await _checked(request, {**current, **sent, "secret_headers": kept})
    to_set: dict[str, Any] = dict(sent)
    to_unset: list[str] = []
    box = secret_box(request)
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
    await ToolStore(request_db(request)).delete(caller.workspace_id, request.match_info["id"])
    await _tools_changed(request, caller.workspace_id)
    return web.Response(status=204)


async def _indexes_ctx(app: web.Application) -> AsyncIterator[None]:
    try:
        await ToolStore(database(app[MONGO], app[SETTINGS])).ensure_indexes()
    except Exception as error:  # the service starts while MongoDB is down; /readyz says so
        log.warning("could not ensure the tools indexes: %s", error)
    yield


def _operations() -> list[Operation]:
    tools = "tools"
    writes = (400, 401, 403, 404, 409, 422)
    return [
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


def add_routes(app: web.Application) -> None:
    """The tools' routes and their indexes, on the chatbots service's ``app``.

    Added before the chatbots' own routes: "tools" would otherwise match as a chatbot id.
    """
    app.cleanup_ctx.append(_indexes_ctx)
    app.router.add_get("/api/chatbots/tools", list_tools)
    app.router.add_post("/api/chatbots/tools", create_tool)
    app.router.add_get("/api/chatbots/tools/{id}", get_tool)
    app.router.add_patch("/api/chatbots/tools/{id}", update_tool)
    app.router.add_delete("/api/chatbots/tools/{id}", delete_tool)
