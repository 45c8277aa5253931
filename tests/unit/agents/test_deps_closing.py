"""Every client the pipeline's deps open is closed, and the worker closes them when it stops.

The clients talk to small loopback servers that count the connections still open to them: a
client that is not closed leaves its connection open, and the test says whose it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Self

import pytest
from mode import Service

from agents.runtime import context
from agents.runtime.context import deps_of, open_deps
from core.ai.llm import ModelSettings, OpenAIChatModel
from core.ai.model_thread import ThreadedModel
from core.settings import Settings

Reply = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

COMPLETION = json.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "hello"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
).encode()


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Reads and never answers: enough for a MongoDB client's monitor to hold a connection."""
    while await reader.read(4096):
        pass


#: What the commands redis-py sends are answered with (``HELLO``: the RESP3 handshake).
ANSWERS = {b"HELLO": b"%1\r\n+proto\r\n:3\r\n", b"PING": b"+PONG\r\n", b"PUBLISH": b":0\r\n"}


async def resp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers every Redis command (RESP arrays of bulk strings) as a Redis server would."""
    while header := await reader.readline():
        words = []
        for _ in range(int(header[1:])):
            size = int((await reader.readline())[1:])
            words.append((await reader.readexactly(size + 2))[:-2].upper())
        answer = ANSWERS.get(words[0], b"+OK\r\n")
        writer.write(answer)
        await writer.drain()


async def http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers every HTTP/1.1 request with a chat completion, keeping the connection alive."""
    while head := await reader.readuntil(b"\r\n\r\n"):
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await reader.readexactly(length)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(COMPLETION), COMPLETION)
        )
        await writer.drain()


@dataclass
class Listener:
    """A loopback server that knows how many connections are open to it."""

    reply: Reply
    opened: int = 0
    closed: int = 0
    _server: asyncio.Server | None = None

    @property
    def open(self) -> int:
        return self.opened - self.closed

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.opened += 1
        try:
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
                await self.reply(reader, writer)
        finally:
            self.closed += 1
            writer.close()


async def _until(condition: Callable[[], bool]) -> None:
    """Wait (a bounded while) for what the servers see: closing is asynchronous at their end."""
    async with asyncio.timeout(10):
        while not condition():  # noqa: ASYNC110  # the servers' counters have no event to await
            await asyncio.sleep(0.01)


def _model_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == "switchboard-models"]


async def test_every_client_the_deps_open_is_closed() -> None:
    async with (
        Listener(silent) as mongo,
        Listener(resp) as redis,
        Listener(http) as tool,
        Listener(http) as model_server,
    ):
        deps = open_deps(
            Settings(
                mongo_url=f"mongodb://127.0.0.1:{mongo.port}/",
                redis_url=f"redis://127.0.0.1:{redis.port}/0",
                tool_allow_networks="127.0.0.1/32",
            )
        )
        # Each client used once, as the stages use them.
        await deps.mongo.aconnect()
        assert await deps.redis.ping()
        await deps.realtime.to_conversation("cv_1", "answer.delta", {"delta": "hi"})
        called = await deps.egress.request("POST", f"http://127.0.0.1:{tool.port}/tool", json={})
        assert called.status == 200
        settings = ModelSettings(f"http://127.0.0.1:{model_server.port}/v1", "key", "m")
        model = ThreadedModel(deps.models, functools.partial(OpenAIChatModel, settings), "m")
        answer = await model.complete([{"role": "user", "content": "hi"}], [])
        assert answer.text == "hello"
        await _until(lambda: mongo.open == 1)
        assert (redis.open, tool.open, model_server.open) == (2, 1, 1), "pool and socket.io"
        assert _model_threads() == ["switchboard-models"]

        await deps.close()
        listeners = {"MongoDB": mongo, "Redis": redis, "tool": tool, "model": model_server}
        with contextlib.suppress(TimeoutError):
            await _until(lambda: all(listener.open == 0 for listener in listeners.values()))
        assert {name: listener.open for name, listener in listeners.items()} == dict.fromkeys(
            listeners, 0
        ), "connections left open"
        assert _model_threads() == [], "the model thread still runs"


@dataclass
class FakeDeps:
    closed: bool = False


@dataclass
class Opener:
    """Stands in for ``context.pipeline_deps``: counts the deps it makes; fails when told."""

    made: list[FakeDeps] = field(default_factory=list)
    failures: int = 0

    @contextlib.asynccontextmanager
    async def __call__(self, settings: Settings) -> AsyncIterator[FakeDeps]:
        await asyncio.sleep(0)  # every agent asks before the first set is made
        if self.failures:
            self.failures -= 1
            raise ConnectionError("MongoDB is not up yet")
        deps = FakeDeps()
        self.made.append(deps)
        try:
            yield deps
        finally:
            deps.closed = True


class Agents(Service):
    """Stands in for the app's agents: notes whether the deps were still open as it stopped."""

    def __init__(self, opener: Opener) -> None:
        self.opener = opener
        self.saw_deps_open: bool | None = None
        super().__init__()

    async def on_stop(self) -> None:
        self.saw_deps_open = not self.opener.made[0].closed


class App(Service):
    """Stands in for the Faust app, a ``mode.Service`` whose dependencies include its agents."""

    def __init__(self, agents: Agents) -> None:
        self.agents = agents
        self.switchboard_settings = Settings()
        super().__init__()

    def on_init_dependencies(self) -> list[Service]:
        return [self.agents]


@pytest.fixture
def opener(monkeypatch: pytest.MonkeyPatch) -> Opener:
    made = Opener()
    monkeypatch.setattr(context, "pipeline_deps", made)
    return made


async def test_the_worker_makes_one_set_and_closes_it_after_its_agents_stop(
    opener: Opener,
) -> None:
    agents = Agents(opener)
    app = App(agents)
    await app.start()
    asked = await asyncio.gather(*(deps_of(app) for _ in range(5)))  # every agent at its start
    assert [id(deps) for deps in asked] == [id(opener.made[0])] * 5
    assert len(opener.made) == 1
    assert not opener.made[0].closed
    await app.stop()
    assert opener.made[0].closed
    assert agents.saw_deps_open is True, "closed before the agents had stopped"


async def test_a_set_that_could_not_be_made_is_made_again_by_the_next_to_ask(
    opener: Opener,
) -> None:
    opener.failures = 1
    app = App(Agents(opener))
    await app.start()
    with pytest.raises(ConnectionError):
        await deps_of(app)
    made: object = await deps_of(app)  # a FakeDeps, which the opener made
    assert made is opener.made[0]
    await app.stop()
    assert opener.made[0].closed


async def test_an_agent_cancelled_while_the_deps_are_made_leaves_them_to_the_rest(
    opener: Opener,
) -> None:
    app = App(Agents(opener))
    await app.start()
    first = asyncio.ensure_future(deps_of(app))
    await asyncio.sleep(0)
    first.cancel()
    made: object = await deps_of(app)
    assert made is opener.made[0]
    assert first.cancelled()
    await app.stop()
    assert len(opener.made) == 1
    assert opener.made[0].closed
