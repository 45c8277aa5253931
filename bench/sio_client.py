"""A minimal socket.io v5 client over an engine.io v4 websocket, for the socket benchmark.

python-socketio's AsyncClient brings reconnection, long-polling and several tasks per client;
a load generator holding 10,000 of them needs only this: open the websocket, connect one
namespace with an `auth` payload, answer the server's pings and hand each event to a callback.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp

#: (event, its first argument, time.time() when its frame was read)
EventHandler = Callable[[str, Any, float], None]


def socket_url(port: int) -> str:
    return f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket"


class Refused(Exception):
    """The server refused the namespace (a CONNECT_ERROR packet); ``code`` names why."""

    def __init__(self, data: object) -> None:
        super().__init__(data)
        self.code = refusal_code(data)


class ProtocolError(Exception):
    pass


def refusal_code(data: object) -> str:
    """The `code` of a refusal's data, wherever python-socketio put it, else its message."""
    if isinstance(data, dict):
        inner = data.get("data")
        if isinstance(inner, dict) and "code" in inner:
            return str(inner["code"])
        if "code" in data:
            return str(data["code"])
        return str(data.get("message", data))
    return str(data)


class SioClient:
    """One socket.io client connected to one namespace; it reads its frames in a task of its own."""

    def __init__(
        self, ws: aiohttp.ClientWebSocketResponse, namespace: str, on_event: EventHandler
    ) -> None:
        self._ws = ws
        self._event_prefix = f"42{namespace},"
        self._connected_prefix = f"40{namespace},"
        self._refused_prefix = f"44{namespace},"
        self._disconnected = f"41{namespace},"
        self._on_event = on_event
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def connect(
        cls,
        session: aiohttp.ClientSession,
        url: str,
        namespace: str,
        auth: dict[str, Any],
        on_event: EventHandler,
    ) -> SioClient:
        """Open the websocket and connect ``namespace``; raise Refused if the server says no.

        Events that arrive before the namespace's CONNECT packet (python-socketio sends what a
        connect handler emits before it) are handed to ``on_event`` as they come.
        """
        ws = await session.ws_connect(url, autoping=True, max_msg_size=0)
        client = cls(ws, namespace, on_event)
        try:
            opened = await client._frame()
            if not opened.startswith("0"):
                raise ProtocolError(f"expected an engine.io open packet, got {opened[:80]!r}")
            await ws.send_str(f"40{namespace},{json.dumps(auth)}")
            while True:
                frame = await client._frame()
                if frame.startswith(client._connected_prefix):
                    break
                if frame.startswith(client._refused_prefix):
                    raise Refused(json.loads(frame[len(client._refused_prefix) :] or "null"))
                await client._handle(frame)
        except BaseException:
            await ws.close()
            raise
        client._reader = asyncio.create_task(client._read())
        return client

    @property
    def open(self) -> bool:
        return self._reader is not None and not self._reader.done()

    async def close(self) -> None:
        await self._ws.close()
        if self._reader is not None:
            await self._reader

    async def _frame(self) -> str:
        message = await self._ws.receive()
        if message.type is not aiohttp.WSMsgType.TEXT:
            raise ProtocolError(f"connection ended during the handshake ({message.type.name})")
        text: str = message.data
        return text

    async def _read(self) -> None:
        async for message in self._ws:
            if message.type is aiohttp.WSMsgType.TEXT and not await self._handle(message.data):
                break
        await self._ws.close()

    async def _handle(self, frame: str) -> bool:
        """Act on one frame; False once the server has ended the session."""
        if frame.startswith(self._event_prefix):
            received_at = time.time()
            payload = frame[len(self._event_prefix) :].lstrip("0123456789")  # an ack id
            event, *args = json.loads(payload)
            self._on_event(event, args[0] if args else None, received_at)
        elif frame == "2":
            await self._ws.send_str("3")
        elif frame == "1" or frame.startswith(self._disconnected):
            return False
        return True
