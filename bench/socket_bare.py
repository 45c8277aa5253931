"""The socket benchmark's baseline: a bare python-socketio server in a process of its own.

AsyncServer on aiohttp with the default in-memory manager, one namespace, no authentication:
a client joins the room its `auth` names (if any) and can `echo`. `POST /fanout` emits the
request's JSON body as a `message` to the room `fanout`, as the socket service relays a
worker's emit to a conversation room. `python -m bench.socket_bare PORT NAMESPACE`.
"""

from __future__ import annotations

import sys
from typing import Any

import socketio
from aiohttp import web

from bench.socket_load import raise_open_files_limit

FANOUT_ROOM = "fanout"


def create_app(namespace: str) -> web.Application:
    server = socketio.AsyncServer(async_mode="aiohttp")
    app = web.Application()
    server.attach(app)

    async def connect(sid: str, environ: dict[str, Any], auth: dict[str, Any] | None) -> None:
        if auth and auth.get("room"):
            await server.enter_room(sid, str(auth["room"]), namespace=namespace)

    async def echo(sid: str, data: Any) -> Any:
        return data

    async def fanout(request: web.Request) -> web.Response:
        await server.emit("message", await request.json(), room=FANOUT_ROOM, namespace=namespace)
        return web.json_response({"ok": True})

    server.on("connect", connect, namespace=namespace)
    server.on("echo", echo, namespace=namespace)
    app.router.add_post("/fanout", fanout)
    return app


def main() -> None:
    raise_open_files_limit()
    web.run_app(
        create_app(sys.argv[2]), host="127.0.0.1", port=int(sys.argv[1]), access_log=None,
        print=lambda _: print("bare socket.io ready", flush=True),
    )  # fmt: skip


if __name__ == "__main__":
    main()
