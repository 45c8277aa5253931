"""/api/openapi.json: valid OpenAPI 3.1, and it lists every route the REST services serve."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from openapi_spec_validator import validate

from core.settings import Settings
from web import applications, bots, chatbots, conversations, users

HEALTH = {"/healthz", "/readyz", "/metrics", "/api/openapi.json"}


def _routes(app: web.Application) -> set[tuple[str, str]]:
    found = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource else ""
        if route.method not in ("HEAD", "OPTIONS") and path not in HEALTH:
            found.add((route.method, path))
    return found


async def test_the_document_is_served_valid_and_complete(settings: Settings) -> None:
    async with TestClient(TestServer(users.create_app(settings))) as client:
        response = await client.get("/api/openapi.json")
        assert response.status == 200
        spec = await response.json()
    validate(spec)
    documented = {(method.upper(), path) for path, item in spec["paths"].items() for method in item}
    served = set()
    for module in (users, applications, chatbots, conversations, bots):
        served |= _routes(module.create_app(settings))
    assert served == documented
