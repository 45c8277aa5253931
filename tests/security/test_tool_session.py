"""Issue 14, finding 4: the tool-call HTTP session is shared by every tenant.

A tenant's endpoint sets a cookie, and another tenant's call to the same host must not carry
it; a redirect to another origin must not take the tool's secret headers along; and headers
that frame the request or claim an identity (``Host``, ``Transfer-Encoding``, ...) are refused
when a tool is saved. The calls go through the function-call stage (in this process, with the
pipeline's own clients) to local endpoints on loopback, which an allow-list opens; the saves go
through the chatbots service.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from agents.function_call import FunctionCallStage
from agents.runtime.context import PipelineDeps, pipeline_deps
from core.ids import new_id
from core.security.egress import keeps_credentials
from core.security.secrets import SecretBox
from core.settings import Settings
from streams.records import FunctionResult
from tests.fakes.tool_endpoint import ToolEndpoint
from tests.integration.api_harness import Db, new_tenant
from tests.integration.pipeline_harness import Conversation, create_application, insert_documents
from web import chatbots

Client = TestClient[web.Request, web.Application]
TOOLS = "/api/chatbots/tools"
#: ``localhost`` as the tools' host: a cookie jar keeps no cookie an IP address sets.
LOOPBACK = "127.0.0.1/32,::1/128"


class CookieEndpoint(ToolEndpoint):
    """An endpoint that starts a session on every answer, as many APIs do."""

    async def _handle(self, request: web.Request) -> web.Response:
        response = await super()._handle(request)
        response.set_cookie("sid", "tenant-a-session")
        return response


@dataclass
class RedirectEndpoint(ToolEndpoint):
    """Answers a call to one of ``redirects``' paths with a 307 to where it maps."""

    redirects: dict[str, str] = field(default_factory=dict)

    async def _handle(self, request: web.Request) -> web.Response:
        response = await super()._handle(request)
        if request.path in self.redirects:
            raise web.HTTPTemporaryRedirect(self.redirects[request.path])
        return response


def _local(url: str) -> str:
    return url.replace("127.0.0.1", "localhost")


@pytest.fixture
def open_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"tool_allow_networks": LOOPBACK})


@pytest.fixture
async def deps(open_settings: Settings) -> AsyncIterator[PipelineDeps]:
    async with pipeline_deps(open_settings) as made:
        yield made


async def _tool_of_a_new_tenant(
    settings: Settings, url: str, token: str, **fields: Any
) -> tuple[str, str]:
    """A workspace, its application enabling ``probe``, and the ``probe`` tool at ``url``."""
    workspace = new_id("ws")
    box = SecretBox(settings.encryption_key.get_secret_value())
    await insert_documents(
        settings,
        "tools",
        {
            "_id": new_id("tool"),
            "workspace_id": workspace,
            "name": "probe",
            "url": url,
            "method": "POST",
            "parameters": {"type": "object"},
            "headers": {"X-Shop": "shoes"},
            "secret_headers": {"Authorization": box.seal(f"Bearer {token}")},
            **fields,
        },
    )
    application = await create_application(settings, workspace, chatbot={"tools": ["probe"]})
    return workspace, application


async def _call(deps: PipelineDeps, workspace: str, application: str) -> FunctionResult:
    conversation = Conversation(workspace, application, new_id("user"))
    call = conversation.function_call("probe", {}, "rq_probe")
    return await FunctionCallStage(deps).run(call)


async def test_a_cookie_one_tenant_is_given_never_goes_with_another_tenants_call(
    open_settings: Settings, deps: PipelineDeps
) -> None:
    async with CookieEndpoint() as endpoint:
        url = _local(endpoint.url("/session"))
        a = await _tool_of_a_new_tenant(open_settings, url, endpoint.token)
        b = await _tool_of_a_new_tenant(open_settings, url, endpoint.token)
        first = await _call(deps, *a)
        second = await _call(deps, *b)
    assert (first.error, second.error) == ("", "")
    seen_by_b = endpoint.requests[1].headers
    assert "Cookie" not in seen_by_b, seen_by_b["Cookie"]


async def test_a_redirect_to_another_origin_drops_the_secret_headers(
    open_settings: Settings, deps: PipelineDeps
) -> None:
    async with RedirectEndpoint() as start, ToolEndpoint() as elsewhere:
        start.redirects["/start"] = elsewhere.url("/landing")  # another port: another origin
        tenant = await _tool_of_a_new_tenant(open_settings, start.url("/start"), start.token)
        result = await _call(deps, *tenant)
    assert start.requests[0].headers["Authorization"] == f"Bearer {start.token}"
    (landed,) = elsewhere.requests
    assert landed.path == "/landing"
    assert "Authorization" not in landed.headers, landed.headers["Authorization"]
    assert landed.headers["X-Shop"] == "shoes"  # a plain header is no secret
    assert "HTTP 401" in result.error  # the other origin did not get the tool's credentials


async def test_a_redirect_within_the_origin_keeps_them(
    open_settings: Settings, deps: PipelineDeps
) -> None:
    async with RedirectEndpoint() as endpoint:
        endpoint.redirects["/start"] = "/done"
        tenant = await _tool_of_a_new_tenant(open_settings, endpoint.url("/start"), endpoint.token)
        result = await _call(deps, *tenant)
    assert (result.error, result.result) == ("", {"status": 200, "body": {"ok": True}})
    assert [r.path for r in endpoint.requests] == ["/start", "/done"]


def test_https_to_http_and_other_origins_lose_the_credentials() -> None:
    assert keeps_credentials("https://api.example.com/a", "https://api.example.com:443/b")
    assert keeps_credentials("http://api.example.com/a", "https://api.example.com/b")
    assert not keeps_credentials("https://api.example.com/a", "http://api.example.com/a")
    assert not keeps_credentials("https://api.example.com/a", "https://evil.example.net/a")
    assert not keeps_credentials("https://api.example.com/a", "https://api.example.com:8443/a")
    assert not keeps_credentials("http://api.example.com:8080/a", "https://api.example.com/a")


async def test_a_stored_tool_with_a_host_header_makes_no_call(
    open_settings: Settings, deps: PipelineDeps
) -> None:
    async with ToolEndpoint() as endpoint:
        tenant = await _tool_of_a_new_tenant(
            open_settings, endpoint.url("/x"), endpoint.token, headers={"Host": "internal.admin"}
        )
        result = await _call(deps, *tenant)
    assert "Host" in result.error
    assert endpoint.requests == []


@pytest.fixture
async def client(open_settings: Settings) -> AsyncIterator[Client]:
    async with TestClient(TestServer(chatbots.create_app(open_settings))) as client:
        yield client


@pytest.mark.parametrize(
    ("where", "name", "value"),
    [
        ("headers", "Host", "internal.admin"),
        ("headers", "Transfer-Encoding", "chunked"),
        ("headers", "content-length", "0"),
        ("headers", "CONNECTION", "keep-alive, Upgrade"),
        ("secret_headers", "Cookie", "sid=someone-else"),
        ("headers", "X-Note", "one\r\nHost: internal.admin"),
    ],
)
async def test_framing_and_identity_headers_are_refused_on_save(
    client: Client, settings: Settings, db: Db, where: str, name: str, value: str
) -> None:
    tenant = new_tenant(settings)
    body = {"name": "probe", "url": "https://93.184.215.14/x", where: {name: value}}
    created = await client.post(TOOLS, json=body, headers=tenant.headers)
    assert created.status == 422, await created.text()
    (detail,) = (await created.json())["error"]["details"]
    assert detail["field"] == where
    assert await db["tools"].count_documents({"workspace_id": tenant.workspace_id}) == 0
    plain = {"name": "probe", "url": "https://93.184.215.14/x"}
    saved = await (await client.post(TOOLS, json=plain, headers=tenant.headers)).json()
    patched = await client.patch(
        f"{TOOLS}/{saved['id']}", json={where: {name: value}}, headers=tenant.headers
    )
    assert patched.status == 422, await patched.text()
