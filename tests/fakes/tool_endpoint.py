"""A tenant's HTTP tool endpoint, for tests: records every request and answers as scripted.

Strict the way a real tenant API would be: it refuses a call without the expected
``Authorization`` header (401), a JSON body that does not parse (400), and a request without an
``Idempotency-Key`` (400), so a test cannot pass on a call a real endpoint would refuse.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from aiohttp import web


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class ToolEndpoint:
    """``async with ToolEndpoint(token="s3cret") as tool:`` serves ``tool.url(path)``."""

    token: str = "tool-secret-token"
    status: int = 200
    answer: Any = field(default_factory=lambda: {"ok": True})
    requests: list[Seen] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    _port: int = 0

    def url(self, path: str = "/tool") -> str:
        return f"http://127.0.0.1:{self._port}{path}"

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = self._runner.addresses[0][1]
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                return web.json_response({"error": "body is not JSON"}, status=400)
        self.requests.append(
            Seen(request.method, request.path, dict(request.query), dict(request.headers), body)
        )
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"error": "unauthorized"}, status=401)
        if not request.headers.get("Idempotency-Key"):
            return web.json_response({"error": "Idempotency-Key is required"}, status=400)
        return web.json_response(self.answer, status=self.status)
