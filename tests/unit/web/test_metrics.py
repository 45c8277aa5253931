"""The requests metric's labels hold nothing a client chose freely."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from core.settings import Settings
from web.service import service_app


async def _ok(request: web.Request) -> web.Response:
    return web.json_response({})


async def test_methods_and_paths_a_client_invents_are_not_labels(settings: Settings) -> None:
    app = service_app(settings, "probe", dependencies=())
    app.router.add_route("*", "/any", _ok)
    async with TestClient(TestServer(app)) as client:
        # The HTTP parser takes only methods it knows, WebDAV's among them.
        for n, method in enumerate(("PROPFIND", "MKCOL", "LOCK", "UNLOCK", "COPY")):
            await client.request(method, "/any")
            await client.get(f"/nowhere/{n}%0Afake")
        await client.get("/any")
        text = await (await client.get("/metrics")).text()
    samples = {
        (s.labels["method"], s.labels["route"], s.labels["status"]): s.value
        for family in text_string_to_metric_families(text)
        if family.name == "switchboard_http_requests"
        for s in family.samples
        if s.name == "switchboard_http_requests_total"
    }
    assert samples[("other", "/any", "200")] == 5
    assert samples[("GET", "unmatched", "404")] == 5
    assert samples[("GET", "/any", "200")] == 1
