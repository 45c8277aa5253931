"""Bodies too deep to parse are refused as the client's error, in the API's error shape."""

from __future__ import annotations

import json

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from core.json_depth import MAX_DEPTH
from core.settings import Settings
from web.service import service_app
from web.validation import StrictBody, parse_body


class Anything(StrictBody):
    value: object = None


async def _take(request: web.Request) -> web.Response:
    body = await parse_body(request, Anything)
    return web.json_response({"took": body.value is not None})


def _app(settings: Settings) -> web.Application:
    app = service_app(settings, "probe", dependencies=())
    app.router.add_post("/take", _take)
    return app


async def test_a_body_past_the_depth_limit_is_refused(settings: Settings) -> None:
    nested = "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)
    async with TestClient(TestServer(_app(settings))) as client:
        response = await client.post("/take", data=f'{{"value": {nested}}}')
        assert response.status == 200, await response.text()
        for deep in (
            "[" * 100_000,
            '{"value": ' + "[" * 100_000 + "]" * 100_000 + "}",
            '{"value": ' + '{"a":' * (MAX_DEPTH + 1) + "1" + "}" * (MAX_DEPTH + 2),
        ):
            response = await client.post("/take", data=deep)
            assert response.status == 400
            error = (await response.json())["error"]
            assert error["code"] == "too_deeply_nested"
            assert str(MAX_DEPTH) in error["message"]


async def test_other_refusals_are_unchanged(settings: Settings) -> None:
    async with TestClient(TestServer(_app(settings))) as client:
        response = await client.post("/take", data="[" * 10)
        assert (await response.json())["error"]["code"] == "malformed_json"
        response = await client.post("/take", data=json.dumps({"value": "[" * 1000}))
        assert await response.json() == {"took": True}  # brackets in a string are text
