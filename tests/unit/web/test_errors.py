"""Every error a service returns has the JSON shape from ARCHITECTURE.md."""

from __future__ import annotations

import io
import logging

import pymongo.errors
import pytest
import redis.exceptions
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from core.errors import NotFound, ValidationFailed
from core.settings import Settings
from web.service import MAX_BODY_BYTES, service_app


async def _boom(request: web.Request) -> web.Response:
    raise RuntimeError("secret internals")


async def _missing(request: web.Request) -> web.Response:
    raise NotFound("Conversation not found")


async def _invalid(request: web.Request) -> web.Response:
    raise ValidationFailed("Invalid body", details=[{"field": "name", "error": "required"}])


async def _recurse(request: web.Request) -> web.Response:
    def down(depth: int) -> int:
        return down(depth + 1)

    return web.json_response(down(0))


async def _redis_gone(request: web.Request) -> web.Response:
    raise redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379")


async def _mongo_gone(request: web.Request) -> web.Response:
    raise pymongo.errors.ServerSelectionTimeoutError("127.0.0.1:27017: connection refused")


async def _echo(request: web.Request) -> web.Response:
    return web.json_response({"size": len(await request.read())})


def _app(settings: Settings) -> web.Application:
    app = service_app(settings, "probe", dependencies=())
    app.router.add_get("/boom", _boom)
    app.router.add_get("/missing", _missing)
    app.router.add_get("/invalid", _invalid)
    app.router.add_post("/echo", _echo)
    app.router.add_get("/recurse/{tail}", _recurse)
    app.router.add_get("/boom/{tail}", _boom)
    app.router.add_get("/redis-gone", _redis_gone)
    app.router.add_get("/mongo-gone", _mongo_gone)
    return app


async def test_error_shapes(settings: Settings) -> None:
    async with TestClient(TestServer(_app(settings))) as client:
        response = await client.get("/missing")
        assert response.status == 404
        assert await response.json() == {
            "error": {"code": "not_found", "message": "Conversation not found"}
        }

        response = await client.get("/invalid")
        assert response.status == 422
        body = await response.json()
        assert body["error"]["code"] == "validation_failed"
        assert body["error"]["details"] == [{"field": "name", "error": "required"}]

        response = await client.get("/nowhere")
        assert response.status == 404
        assert (await response.json())["error"]["message"] == "No such resource: GET /nowhere"

        response = await client.delete("/missing")
        assert response.status == 405
        assert (await response.json())["error"]["code"] == "method_not_allowed"
        assert "GET" in response.headers["Allow"]

        response = await client.get("/boom")
        assert response.status == 500
        body = await response.json()
        assert body["error"]["code"] == "internal_error"
        assert "secret" not in body["error"]["message"]


async def test_oversized_body_is_refused(settings: Settings) -> None:
    async with TestClient(TestServer(_app(settings))) as client:
        response = await client.post("/echo", data=b"x" * 100)
        assert (await response.json()) == {"size": 100}
        response = await client.post("/echo", data=io.BytesIO(b"x" * (MAX_BODY_BYTES + 1)))
        assert response.status == 413
        assert (await response.json())["error"]["code"] == "request_entity_too_large"


async def test_health_without_dependencies(settings: Settings) -> None:
    async with TestClient(TestServer(_app(settings))) as client:
        assert (await (await client.get("/healthz")).json()) == {"status": "ok", "service": "probe"}
        response = await client.get("/readyz")
        assert response.status == 200
        assert (await response.json())["checks"] == {}
        assert response.headers["X-Switchboard-Service"] == "probe"


async def test_recursion_too_deep_is_a_client_error(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    async with TestClient(TestServer(_app(settings))) as client:
        with caplog.at_level(logging.WARNING, logger="web.errors"):
            response = await client.get("/recurse/x%0Afake%20log%20line")
        assert response.status == 400
        assert (await response.json())["error"]["code"] == "too_deeply_nested"
    assert caplog.messages == ["nested too deeply to handle: GET /recurse/x\\x0afake log line"]


async def test_a_failed_request_is_logged_with_its_path_escaped(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    async with TestClient(TestServer(_app(settings))) as client:
        with caplog.at_level(logging.ERROR, logger="web.errors"):
            response = await client.get("/boom/x%0D%0Afake%20log%20line%1B[2K")
        assert response.status == 500
    assert caplog.messages == ["unhandled error on GET /boom/x\\x0d\\x0afake log line\\x1b[2K"]


@pytest.mark.parametrize("path", ["/redis-gone", "/mongo-gone"])
async def test_a_backing_service_failing_mid_request_answers_503(
    settings: Settings, path: str
) -> None:
    async with TestClient(TestServer(_app(settings))) as client:
        response = await client.get(path)
        assert response.status == 503
        assert response.headers["Retry-After"] == "1"
        body = await response.json()
        assert body["error"]["code"] == "dependency_unavailable"
        assert "127.0.0.1" not in body["error"]["message"]
