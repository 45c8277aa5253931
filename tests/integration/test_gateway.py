"""Traefik routes each path prefix to its service, health at /_health/{service}, and / to Nginx."""

from __future__ import annotations

import subprocess

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.settings import SERVICES, Settings

#: A GET of each path, without credentials: the service that answers, and how it refuses.
ROUTES = {
    "/api/auth/login": ("users", 405),  # sign-in is a POST
    "/api/users/me": ("users", 401),
    "/api/apps/some-app": ("applications", 401),
    "/api/chatbots/some-bot": ("chatbots", 401),
    "/api/conversations/some-conversation": ("conversations", 401),
    "/api/files/presign": ("files", 404),  # no endpoints there yet
    "/api/channels/some-channel": ("bots", 401),
    "/webhooks/telegram/some-channel": ("integrations", 405),  # platforms POST
    "/socket.io/": ("socket", 400),  # not an Engine.IO handshake
}


@pytest.mark.parametrize("service", SERVICES)
async def test_health_through_the_gateway(
    settings: Settings, web_all: subprocess.Popen[bytes], service: str
) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{settings.gateway_url}/_health/{service}") as response:
            assert response.status == 200
            assert response.headers["X-Switchboard-Service"] == service
            assert await response.json() == {"status": "ok", "service": service}


@pytest.mark.parametrize(("path", "expected"), ROUTES.items())
async def test_each_prefix_reaches_its_service(
    settings: Settings, web_all: subprocess.Popen[bytes], path: str, expected: tuple[str, int]
) -> None:
    service, status = expected
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{settings.gateway_url}{path}") as response:
            assert response.headers["X-Switchboard-Service"] == service
            assert response.status == status  # refused in the JSON error shape
            body = await response.json()
            code = {400: "bad_request", 401: "unauthorized", 404: "not_found",
                    405: "method_not_allowed"}[status]  # fmt: skip
            assert body["error"]["code"] == code
            if status == 404:
                assert path in body["error"]["message"]


async def test_landing_page_from_nginx(
    settings: Settings, web_all: subprocess.Popen[bytes]
) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{settings.gateway_url}/") as response:
            assert response.status == 200
            assert "X-Switchboard-Service" not in response.headers
            page = await response.text()
    assert "<h1>Switchboard</h1>" in page
    for service in SERVICES:
        assert f'href="/_health/{service}"' in page


@pytest.mark.parametrize("service", SERVICES)
async def test_ready_and_metrics(
    settings: Settings, web_all: subprocess.Popen[bytes], service: str
) -> None:
    base = settings.service_url(service)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/readyz") as response:
            body = await response.json()
            assert response.status == 200, body
            assert body["status"] == "ready"
            assert set(body["checks"].values()) == {"ok"}
        async with http.get(f"{base}/metrics") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain; version=")
            families = {f.name: f for f in text_string_to_metric_families(await response.text())}
    requests = families["switchboard_http_requests"]
    assert any(
        sample.labels == {"service": service, "method": "GET", "route": "/readyz", "status": "200"}
        for sample in requests.samples
    )


async def test_ping_port_serves_only_ping(settings: Settings) -> None:
    base = f"http://127.0.0.1:{settings.gateway_ping_port}"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/ping") as response:
            assert response.status == 200
        async with http.get(f"{base}/_health/users") as response:
            assert response.status == 404
