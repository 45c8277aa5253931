"""What the socket service's tests share: the service on a real port, and its clients."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import socketio
from aiohttp.test_utils import TestServer

from core.clients.database import database, new_mongo_client
from core.security.tokens import TokenService
from core.settings import Settings
from core.stores.application_store import ApplicationStore
from web.socket.deps import SIO
from web.socket.service import EVENT_FEED, create_app


@dataclass
class SocketService:
    server: TestServer

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    @property
    def sio(self) -> socketio.AsyncServer:
        return self.server.app[SIO]

    async def feed_ready(self, within_s: float = 30) -> None:
        """Wait until this instance's inbox feed has joined its consumer group."""
        await asyncio.wait_for(self.server.app[EVENT_FEED].assigned.wait(), within_s)


@asynccontextmanager
async def socket_service(settings: Settings) -> AsyncIterator[SocketService]:
    server = TestServer(create_app(settings), host="127.0.0.1")
    await server.start_server()
    try:
        yield SocketService(server)
    finally:
        await server.close()


@dataclass
class Client:
    """A python-socketio client that records what it receives, per event."""

    namespace: str
    sio: socketio.AsyncClient = field(default_factory=lambda: socketio.AsyncClient())
    received: dict[str, list[Any]] = field(default_factory=lambda: defaultdict(list))
    refusal: Any = None

    def __post_init__(self) -> None:
        self.sio.on("*", self._record, namespace=self.namespace)
        self.sio.on("connect_error", self._refused, namespace=self.namespace)

    async def _record(self, event: str, data: Any = None) -> None:
        self.received[event].append(data)

    async def _refused(self, data: Any = None) -> None:
        self.refusal = data

    async def connect(self, url: str, auth: dict[str, Any]) -> None:
        await self.sio.connect(
            url, namespaces=[self.namespace], auth=auth, transports=["websocket"], wait_timeout=10
        )

    async def refused_code(self, url: str, auth: dict[str, Any]) -> str:
        """Connect, expecting a refusal; the refusal's code."""
        try:
            await self.connect(url, auth)
        except socketio.exceptions.ConnectionError:
            await self.sio.eio.disconnect()  # closes the refused client's HTTP session
        else:
            await self.sio.disconnect()
            raise AssertionError("the connection was accepted")
        assert isinstance(self.refusal, dict), self.refusal
        data = self.refusal.get("data", self.refusal)
        assert data["message"], data
        return str(data["code"])

    async def wait_for(self, event: str, count: int = 1, within_s: float = 15) -> list[Any]:
        deadline = time.monotonic() + within_s
        while len(self.received[event]) < count:
            assert time.monotonic() < deadline, (
                f"{len(self.received[event])} of {count} {event!r} in {within_s}s; "
                f"got {dict(self.received)}"
            )
            await asyncio.sleep(0.05)
        return self.received[event]

    async def call(self, event: str, data: Any) -> Any:
        return await self.sio.call(event, data, namespace=self.namespace, timeout=20)

    async def emit(self, event: str, data: Any) -> None:
        await self.sio.emit(event, data, namespace=self.namespace)

    async def close(self) -> None:
        await self.sio.disconnect()


async def widget_application(settings: Settings, workspace_id: str) -> tuple[str, str]:
    """A new application of ``workspace_id``: its id and its public widget key."""
    client = new_mongo_client(settings)
    try:
        created = await ApplicationStore(database(client, settings)).create(
            workspace_id, {"name": "widget test"}
        )
    finally:
        await client.close()
    return str(created["_id"]), str(created["widget_key"])


def operator_token(settings: Settings, workspace_id: str, role: str = "agent") -> str:
    return TokenService(settings).access_token(
        f"usr_{uuid.uuid4().hex}", workspace_id, role, f"ses_{uuid.uuid4().hex}"
    )
