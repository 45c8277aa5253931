"""The baseline: a bare aiohttp app answering a small JSON body, with no middleware at all."""

from __future__ import annotations

import sys

from aiohttp import web


async def hello(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "service": "hello"})


def main() -> None:
    app = web.Application()
    app.router.add_get("/healthz", hello)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


if __name__ == "__main__":
    main()
