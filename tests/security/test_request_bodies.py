"""Input nested deeply enough to exhaust Python's parser: 100,000 ``[`` to every route that reads
a JSON body (every operation of the OpenAPI document with one), to a page cursor, and to the
socket service as an Engine.IO packet. Each is refused as the client's error (400
``too_deeply_nested``), never a 500, and the services answer on, directly and through the
gateway."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import uuid
from typing import Any

import aiohttp
import pytest

from core.settings import SERVICES, Settings
from tests.security.account_harness import PASSWORD, account, login, users_service

DEEP = "[" * 100_000
#: Which service serves each path prefix (the gateway's routes), to probe it directly too.
SERVICE_OF = {
    "/api/auth": "users",
    "/api/users": "users",
    "/api/apps": "applications",
    "/api/chatbots": "chatbots",
    "/api/conversations": "conversations",
    "/api/channels": "bots",
}
ORIGINS = ("direct", "gateway")


def _origin(settings: Settings, origin: str, path: str) -> str:
    if origin == "gateway":
        return settings.gateway_url
    service = next(s for prefix, s in SERVICE_OF.items() if path.startswith(prefix))
    return settings.service_url(service)


def _forwarded_for() -> dict[str, str]:
    # Direct calls come from a trusted proxy's address: each gets an address of its own, so
    # no sign-in or sign-up throttle answers for the parser.
    n = uuid.uuid4().int
    return {"X-Forwarded-For": f"10.{n % 251}.{(n >> 8) % 251}.{(n >> 16) % 251 + 1}"}


async def _owner(settings: Settings) -> tuple[dict[str, str], str]:
    """The headers and user id of a signed-in owner of a new workspace (the users service
    looks a token's user up, so minted tokens will not do)."""
    async with users_service(settings) as client:
        response = await login(client, await account(client), PASSWORD)
        assert response.status == 200, await response.text()
        headers = {"Authorization": f"Bearer {(await response.json())['access_token']}"}
        me = await (await client.get("/api/users/me", headers=headers)).json()
        return headers, str(me["id"])


async def _application_with_key(
    http: aiohttp.ClientSession, base: str, owner: dict[str, str]
) -> Any:
    async with http.post(f"{base}/api/apps", json={"name": "Deep"}, headers=owner) as r:
        assert r.status == 201, await r.text()
        application_id = (await r.json())["id"]
    async with http.post(f"{base}/api/apps/{application_id}/keys", json={}, headers=owner) as r:
        assert r.status == 201, await r.text()
        return application_id, (await r.json())["key"]


def _assert_refused(status: int, body: Any, what: str) -> None:
    assert status == 400, f"{what}: {status} {body}"
    assert body["error"]["code"] == "too_deeply_nested", what
    assert body["error"]["message"], what


async def _services_answer(http: aiohttp.ClientSession, settings: Settings) -> None:
    for service in SERVICES:
        async with http.get(f"{settings.service_url(service)}/healthz") as response:
            assert response.status == 200, service


@pytest.mark.parametrize("origin", ORIGINS)
async def test_every_json_body_too_deep_to_parse_is_refused(
    settings: Settings, web_all: subprocess.Popen[bytes], origin: str
) -> None:
    owner, user_id = await _owner(settings)
    # Path parameters name what exists where a handler looks it up before reading the body.
    existing = {"/api/apps/": "", "/api/users/": user_id}
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{settings.service_url('users')}/api/openapi.json") as response:
            document = await response.json()
        application_id, api_key = await _application_with_key(http, settings.gateway_url, owner)
        existing["/api/apps/"] = application_id
        probed = []
        for path, operations in document["paths"].items():
            for method, operation in operations.items():
                if "requestBody" not in operation:
                    continue
                headers = {"Content-Type": "application/json", **_forwarded_for()}
                if operation.get("security"):
                    headers.update(owner)
                    headers["X-Api-Key"] = api_key
                value = next((v for p, v in existing.items() if p in path), "x")
                url = _origin(settings, origin, path) + re.sub(r"{\w+}", value, path)
                async with http.request(method.upper(), url, data=DEEP, headers=headers) as r:
                    body = await r.json()
                    _assert_refused(r.status, body, f"{method.upper()} {path}")
                probed.append(f"{method.upper()} {path}")
        # Every body-reading route of every REST service was reached.
        assert {SERVICE_OF[next(p for p in SERVICE_OF if op.split()[1].startswith(p))]
                for op in probed} == set(SERVICE_OF.values())  # fmt: skip
        await _services_answer(http, settings)
        async with http.post(
            f"{settings.gateway_url}/api/apps", json={"name": "After"}, headers=owner
        ) as response:
            assert response.status == 201  # and they still do their work


@pytest.mark.parametrize("origin", ORIGINS)
async def test_a_page_cursor_too_deep_to_parse_is_refused(
    settings: Settings, web_all: subprocess.Popen[bytes], origin: str
) -> None:
    owner, _ = await _owner(settings)
    # A cursor is base64 of JSON; 2,000 levels fit in a request line and exhaust the parser.
    cursor = base64.urlsafe_b64encode(b"[" * 2000).decode().rstrip("=")
    async with aiohttp.ClientSession() as http:
        for path in ("/api/conversations", "/api/conversations/x/messages"):
            url = f"{_origin(settings, origin, path)}{path}"
            async with http.get(url, params={"cursor": cursor}, headers=owner) as r:
                _assert_refused(r.status, await r.json(), f"GET {path}?cursor=")
        await _services_answer(http, settings)


@pytest.mark.parametrize("origin", ORIGINS)
async def test_a_socket_packet_too_deep_to_parse_leaves_the_connection_up(
    settings: Settings, web_all: subprocess.Popen[bytes], origin: str
) -> None:
    base = settings.gateway_url if origin == "gateway" else settings.service_url("socket")
    engine = f"{base}/socket.io/?EIO=4"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        async with http.get(f"{engine}&transport=polling") as response:
            opened = await response.text()
        sid = json.loads(opened[1:])["sid"]
        async with http.ws_connect(f"{engine}&transport=websocket&sid={sid}") as ws:
            await ws.send_str("2probe")
            assert (await ws.receive_str(timeout=10)) == "3probe"
            await ws.send_str("5")  # upgraded
            assert (await ws.receive_str(timeout=10)) == "6"  # the polling side's no-op
            await ws.send_str("4" + DEEP)  # a message packet whose data is JSON, too deep
            # The connection is still up: a connect to the widget namespace with a key no
            # application has is answered with its refusal.
            await ws.send_str("40/widget," + json.dumps({"key": "wk_" + "0" * 32}))
            answer = await ws.receive(timeout=10)
            assert answer.type == aiohttp.WSMsgType.TEXT, answer
            assert answer.data.startswith("44/widget,"), answer.data
        await _services_answer(http, settings)
