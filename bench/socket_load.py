"""The socket benchmark's load generator: a process that opens and holds socket.io clients.

`python -m bench.socket_load PORT NAMESPACE` reads one JSON command a line on stdin and answers
each with one JSON line on stdout:

- `{"op": "connect", "count": N, "auth": {...}, "ready": EVENT|null, "concurrency": C}`: open
  N more clients, at most C handshakes in flight. A client counts once its namespace is
  connected and, if `ready` names an event, once that event has arrived (the widget's
  `history`, the last thing the socket service sends on connect). A client refused with
  `unavailable` tries again after a second or so, as docs/realtime.md asks. Answers how many
  connected, the failed attempts by reason, the time taken, each client's connect time (ms,
  of its successful attempt) and the last `session`.
- `{"op": "listen"}`: forget the deliveries seen so far.
- `{"op": "deliveries"}`: the latency (ms, `time.time()` on arrival minus the data's `sent_at`)
  of every `message` event seen since the last `listen`, and the slowest of each push (by `id`).
- `{"op": "held"}`: how many clients are still open, and how many deliveries were seen.
- `{"op": "quit"}`: close every client and exit.
"""

from __future__ import annotations

import asyncio
import json
import random
import resource
import sys
import time
from collections import Counter
from typing import Any

import aiohttp

from bench.sio_client import Refused, SioClient, socket_url

CONNECT_TIMEOUT_S = 60.0
#: A refusal with `unavailable` is retried (docs/realtime.md says to) this often.
RETRIES = 5


def raise_open_files_limit() -> None:
    """Each client is a socket: allow as many as the hard limit does."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Generator:
    def __init__(self, session: aiohttp.ClientSession, port: int, namespace: str) -> None:
        self._session = session
        self._url = socket_url(port)
        self._namespace = namespace
        self._clients: list[SioClient] = []
        self._latencies: list[float] = []
        self._slowest: dict[str, float] = {}  # push id -> its slowest delivery (ms)

    async def connect(
        self, count: int, auth: dict[str, Any], ready: str | None, concurrency: int
    ) -> dict[str, Any]:
        gate = asyncio.Semaphore(concurrency)
        failures: Counter[str] = Counter()
        times: list[float] = []
        sessions: list[Any] = []

        async def one() -> None:
            for attempt in range(1 + RETRIES):
                async with gate:
                    began = time.perf_counter()  # the wait for a slot is not counted
                    failure = await self._attempt(auth, ready, sessions, failures)
                if failure is None:
                    times.append((time.perf_counter() - began) * 1000)
                    return
                failures[failure] += 1
                if failure != "refused: unavailable" or attempt == RETRIES:
                    return
                await asyncio.sleep(random.uniform(0.5, 1.5))  # noqa: S311 (jitter, not a secret)

        began = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(count)))
        seconds = time.perf_counter() - began
        return {
            "connected": len(times),
            "failures": dict(failures),
            "seconds": seconds,
            "connect_ms": [round(t, 2) for t in times],
            "session": sessions[-1] if sessions else None,
            "held": self.held(),
        }

    async def _attempt(
        self, auth: dict[str, Any], ready: str | None, sessions: list[Any], degraded: Counter[str]
    ) -> str | None:
        """One connection attempt: None once the client is ready, else why it failed.

        A ready event that carries an error (a `history` the server could not read) still
        makes the client ready; it is counted in ``degraded``.
        """
        arrived = asyncio.Event() if ready else None

        def on_event(event: str, data: Any, received_at: float) -> None:
            if event == "session":
                sessions.append(data)
            if arrived is not None and event == ready:
                if isinstance(data, dict) and isinstance(data.get("error"), dict):
                    degraded[f"{event} error: {data['error'].get('code')}"] += 1
                arrived.set()
            self._record(event, data, received_at)

        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                client = await SioClient.connect(
                    self._session, self._url, self._namespace, auth, on_event
                )
                self._clients.append(client)
                if arrived is not None:
                    await arrived.wait()
        except Refused as refused:
            return f"refused: {refused.code}"
        except TimeoutError:
            return "timeout"
        except (aiohttp.ClientError, OSError, ValueError) as error:
            return f"error: {type(error).__name__}"
        return None

    def _record(self, event: str, data: Any, received_at: float) -> None:
        if event == "message" and isinstance(data, dict) and "sent_at" in data:
            latency = round((received_at - float(data["sent_at"])) * 1000, 3)
            self._latencies.append(latency)
            push = str(data.get("id"))
            self._slowest[push] = max(latency, self._slowest.get(push, 0.0))

    def listen(self) -> dict[str, Any]:
        self._latencies = []
        self._slowest = {}
        return {"ok": True}

    def deliveries(self) -> dict[str, Any]:
        return {"latencies_ms": self._latencies, "slowest_ms": self._slowest}

    def delivered(self) -> int:
        return len(self._latencies)

    def held(self) -> int:
        return sum(client.open for client in self._clients)

    async def close(self) -> None:
        await asyncio.gather(*(client.close() for client in self._clients))


async def _serve(port: int, namespace: str) -> None:
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        generator = Generator(session, port, namespace)
        try:
            # Commands are few and far between: a thread's blocking read is simplest.
            while line := await asyncio.to_thread(sys.stdin.readline):
                command = json.loads(line)
                op = command["op"]
                if op == "connect":
                    answer = await generator.connect(
                        int(command["count"]), command.get("auth") or {}, command.get("ready"),
                        int(command.get("concurrency", 200)),
                    )  # fmt: skip
                elif op == "listen":
                    answer = generator.listen()
                elif op == "deliveries":
                    answer = generator.deliveries()
                elif op == "held":
                    answer = {"held": generator.held(), "delivered": generator.delivered()}
                elif op == "quit":
                    break
                else:
                    answer = {"error": f"unknown op {op!r}"}
                print(json.dumps(answer), flush=True)
        finally:
            await generator.close()


def main() -> None:
    raise_open_files_limit()
    asyncio.run(_serve(int(sys.argv[1]), sys.argv[2]))


if __name__ == "__main__":
    main()
